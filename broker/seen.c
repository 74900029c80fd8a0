/*  seen.c - the replay window: the message ids the broker has seen, each
    until it expires.

    At thousands of messages per second the window holds hundreds of
    thousands of ids (a minute's worth at the default skew), and every
    message looks one up and adds one. An open-addressing table of fixed
    slots does both in one or two cache lines, with no allocation per id:
    the table is indexed by a keyed SipHash of the id (crypto_shorthash,
    with a key drawn at start), so that a sender choosing its ids cannot
    pile them into one run of slots. An expired slot is left where it is
    until the table is rebuilt (when live and expired slots together pass
    3/4 of it), keeping only live ids, in a table at most half full.
*/
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define S_MIN_SLOTS 1024

typedef struct {
    uint8_t id[SBI_ID_SIZE];
    uint64_t expiry_ms;       /* 0: never used */
} s_slot_t;

struct broker_seen_t {
    s_slot_t *slots;
    size_t mask;              /* slots - 1; a power of two */
    size_t used;              /* slots with an id, expired or not */
    uint8_t key[crypto_shorthash_KEYBYTES];
};

static size_t s_index(const broker_seen_t *self, const uint8_t id[SBI_ID_SIZE])
{
    uint8_t hash[crypto_shorthash_BYTES];
    crypto_shorthash(hash, id, SBI_ID_SIZE, self->key);
    uint64_t h;
    memcpy(&h, hash, sizeof h);
    return (size_t) h & self->mask;
}

static s_slot_t *s_table(size_t slots)
{
    s_slot_t *table = calloc(slots, sizeof *table);
    assert(table);
    return table;
}

broker_seen_t *broker_seen_new(void)
{
    broker_seen_t *self = calloc(1, sizeof *self);
    assert(self);
    self->slots = s_table(S_MIN_SLOTS);
    self->mask = S_MIN_SLOTS - 1;
    crypto_shorthash_keygen(self->key);
    return self;
}

void broker_seen_destroy(broker_seen_t **self_p)
{
    broker_seen_t *self = *self_p;
    if (!self)
        return;
    free(self->slots);
    free(self);
    *self_p = NULL;
}

bool broker_seen_has(const broker_seen_t *self, const uint8_t id[SBI_ID_SIZE], uint64_t now_ms)
{
    for (size_t i = s_index(self, id);; i = (i + 1) & self->mask) {
        const s_slot_t *slot = &self->slots[i];
        if (slot->expiry_ms == 0)
            return false;
        if (memcmp(slot->id, id, SBI_ID_SIZE) == 0)
            return slot->expiry_ms >= now_ms;
    }
}

/* Puts `id` in the first slot of its run that is free or holds it. */
static void s_put(broker_seen_t *self, const uint8_t id[SBI_ID_SIZE], uint64_t expiry_ms)
{
    size_t i = s_index(self, id);
    while (self->slots[i].expiry_ms != 0 && memcmp(self->slots[i].id, id, SBI_ID_SIZE) != 0)
        i = (i + 1) & self->mask;
    s_slot_t *slot = &self->slots[i];
    if (slot->expiry_ms == 0) {
        memcpy(slot->id, id, SBI_ID_SIZE);
        self->used++;
    }
    if (expiry_ms > slot->expiry_ms)
        slot->expiry_ms = expiry_ms;
}

/* Keeps the ids live at `now_ms`, in a table at most half full. */
static void s_rebuild(broker_seen_t *self, uint64_t now_ms)
{
    size_t live = 0;
    for (size_t i = 0; i <= self->mask; i++)
        live += self->slots[i].expiry_ms >= now_ms;
    size_t slots = S_MIN_SLOTS;
    while (slots < 2 * live)
        slots *= 2;
    s_slot_t *old = self->slots;
    size_t old_slots = self->mask + 1;
    self->slots = s_table(slots);
    self->mask = slots - 1;
    self->used = 0;
    for (size_t i = 0; i < old_slots; i++)
        if (old[i].expiry_ms >= now_ms)
            s_put(self, old[i].id, old[i].expiry_ms);
    free(old);
}

void broker_seen_add(broker_seen_t *self, const uint8_t id[SBI_ID_SIZE], uint64_t expiry_ms,
                     uint64_t now_ms)
{
    if ((self->used + 1) * 4 > (self->mask + 1) * 3)
        s_rebuild(self, now_ms);
    s_put(self, id, expiry_ms);
}

size_t broker_seen_size(const broker_seen_t *self)
{
    return self->used;
}

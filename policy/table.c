/*  table.c - the read-only hash tables a loaded policy answers from.

    zhashx serves while loading, but its lookup writes to the table (the
    cursor, a cached index, even a rehash of a long chain), so two threads
    deciding on one shared policy would race. A loaded policy freezes each
    index into one of these: open addressing, built once, and a lookup only
    reads, so any number of threads may share it and no call allocates. */
#include "internal.h"

#include <string.h>

static uint64_t s_hash(const char *key)
{
    uint64_t hash = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)key; *c; c++)
        hash = (hash ^ *c) * 0x100000001b3ull;
    return hash;
}

int pol_table_freeze(pol_table_t *self, pol_arena_t *arena, zhashx_t *from)
{
    *self = (pol_table_t){0};
    size_t count = from ? zhashx_size(from) : 0, capacity = 8;
    while (capacity < count * 2)
        capacity *= 2;
    self->keys = pol_alloc(arena, capacity * sizeof *self->keys);
    self->values = pol_alloc(arena, capacity * sizeof *self->values);
    if (!self->keys || !self->values)
        return SB_ENOMEM;
    self->mask = capacity - 1;
    for (void *value = count ? zhashx_first(from) : NULL; value; value = zhashx_next(from)) {
        const char *key = pol_strdup(arena, zhashx_cursor(from));
        if (!key)
            return SB_ENOMEM;
        size_t slot = s_hash(key) & self->mask;
        while (self->keys[slot])
            slot = (slot + 1) & self->mask;
        self->keys[slot] = key;
        self->values[slot] = value;
    }
    return SB_OK;
}

void *pol_table_lookup(const pol_table_t *self, const char *key)
{
    if (!self->keys)
        return NULL;
    /* At most half full: every probe sequence ends at an empty slot. */
    for (size_t slot = s_hash(key) & self->mask; self->keys[slot]; slot = (slot + 1) & self->mask)
        if (strcmp(self->keys[slot], key) == 0)
            return self->values[slot];
    return NULL;
}

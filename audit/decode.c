/*  decode.c - stored audit entries back into records, without a malloc per
    record: an arena allocator bounded like sbi_unpack_t. */
#include "audit_int.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

static void *s_arena_alloc(void *data, size_t size)
{
    sbi_arena_t *self = data;
    size_t align = alignof(max_align_t);
    size_t start = (self->used + align - 1) & ~(align - 1);
    if (start > self->budget || size > self->budget - start)
        return NULL;
    self->used = start + size;
    return self->base + start;
}

static void s_arena_free(void *data, void *pointer)
{
    (void)data;
    (void)pointer;
}

static void s_arena_init(sbi_arena_t *self)
{
    memset(self, 0, sizeof *self);
    self->allocator.alloc = s_arena_alloc;
    self->allocator.free = s_arena_free;
    self->allocator.allocator_data = self;
}

/* Empties the arena and gives it the budget for decoding `size` bytes. The
   buffer only grows here, never during a decode, so pointers stay valid. */
static int s_arena_reset(sbi_arena_t *self, size_t size)
{
    size_t budget = SBI_UNPACK_BUDGET(size);
    if (budget > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 65536;
        while (capacity < budget)
            capacity *= 2;
        uint8_t *base = realloc(self->base, capacity);
        if (!base)
            return SB_ENOMEM;
        self->base = base;
        self->capacity = capacity;
    }
    self->budget = budget;
    self->used = 0;
    return SB_OK;
}

void sbi_audit_decoder_init(sbi_audit_decoder_t *self)
{
    s_arena_init(&self->entry_arena);
    s_arena_init(&self->record_arena);
    self->why = NULL;
}

void sbi_audit_decoder_clear(sbi_audit_decoder_t *self)
{
    free(self->entry_arena.base);
    free(self->record_arena.base);
    sbi_audit_decoder_init(self);
}

static int s_fail(sbi_audit_decoder_t *self, int code, const char *why)
{
    self->why = why;
    return code;
}

int sbi_audit_entry_decode(sbi_audit_decoder_t *self, const void *data, size_t size,
                           Sharebus__AuditRecord **record_p, uint8_t hash[SBI_HASH_SIZE])
{
    *record_p = NULL;
    if (size > SBI_AUDIT_ENTRY_MAX)
        return s_fail(self, SB_ETOOBIG, "entry is larger than any record the log writes");
    if (s_arena_reset(&self->entry_arena, size) != SB_OK)
        return s_fail(self, SB_ENOMEM, "out of memory");
    Sharebus__AuditEntry *entry =
        sharebus__audit_entry__unpack(&self->entry_arena.allocator, size, data);
    if (!entry)
        return s_fail(self, SB_EMALFORMED, "entry does not decode");
    if (entry->hash.len != SBI_HASH_SIZE)
        return s_fail(self, SB_EMALFORMED, "entry hash is not 32 bytes");
    uint8_t computed[SBI_HASH_SIZE];
    crypto_generichash(computed, sizeof computed, entry->record.data, entry->record.len, NULL, 0);
    if (memcmp(computed, entry->hash.data, SBI_HASH_SIZE) != 0)
        return s_fail(self, SB_EBADSIG, "record bytes do not match their hash");
    if (s_arena_reset(&self->record_arena, entry->record.len) != SB_OK)
        return s_fail(self, SB_ENOMEM, "out of memory");
    Sharebus__AuditRecord *record = sharebus__audit_record__unpack(
        &self->record_arena.allocator, entry->record.len, entry->record.data);
    if (!record)
        return s_fail(self, SB_EMALFORMED, "record does not decode");
    memcpy(hash, computed, SBI_HASH_SIZE);
    *record_p = record;
    self->why = NULL;
    return SB_OK;
}

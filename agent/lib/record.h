/*  record.h - converting sb_record_t to and from the wire Record. Internal
    to sharebus (the agent and the client library). */
#ifndef SBI_RECORD_H_INCLUDED
#define SBI_RECORD_H_INCLUDED

#include "sbi.h"

#define SBI_RECORD_FIELDS_MAX 1024
#define SBI_VALUE_MAX (1 << 20)

/* A wire Record viewing `record`'s storage: valid until the record changes.
   Free with sbi_record_pb_free (it frees only what this call allocated). */
Sharebus__Record *sbi_record_pb(const sb_record_t *record);
void sbi_record_pb_free(Sharebus__Record **pb_p);

/* A record copied from a wire Record; NULL when a name is invalid or
   repeated, or a field has no value or a real one that is not finite. */
sb_record_t *sbi_record_from_pb(const Sharebus__Record *pb);

/* True when every field of `pb` has a valid, unique name and a value (a
   real one finite, as sb_record_set_real wants it). */
bool sbi_record_pb_valid(const Sharebus__Record *pb);

/* One frame of the client protocol (back-end <-> agent), decoded with a
   bounded allocator as both sides receive it; NULL when it does not
   decode. Free with sharebus__client_message__free_unpacked(m, NULL). */
Sharebus__ClientMessage *sbi_client_message_decode(const uint8_t *data, size_t size);

#endif

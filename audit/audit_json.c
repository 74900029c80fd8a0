/*  audit_json.c - a record as JSON, the form query --json and export use. */
#include "audit_int.h"

#include <json-c/json.h>
#include <stdlib.h>

static void s_add_string(json_object *obj, const char *name, const char *value)
{
    json_object_object_add(obj, name, json_object_new_string(value ? value : ""));
}

static void s_add_hex(json_object *obj, const char *name, ProtobufCBinaryData data)
{
    char small[2 * 64 + 1];
    char *hex = data.len <= 64 ? small : malloc(2 * data.len + 1);
    assert(hex);
    sbi_hex(data.data, data.len, hex);
    json_object_object_add(obj, name, json_object_new_string(hex));
    if (hex != small)
        free(hex);
}

static void s_add_list(json_object *obj, const char *name, char **items, size_t n_items)
{
    json_object *list = json_object_new_array_ext((int)n_items);
    for (size_t i = 0; i < n_items; i++)
        json_object_array_add(list, json_object_new_string(items[i] ? items[i] : ""));
    json_object_object_add(obj, name, list);
}

static const char *s_decision(Sharebus__Decision decision)
{
    switch (decision) {
    case SHAREBUS__DECISION__DECISION_ALLOW: return "allow";
    case SHAREBUS__DECISION__DECISION_DENY: return "deny";
    case SHAREBUS__DECISION__DECISION_NONE: return "";
    default: return "unknown";
    }
}

json_object *sbi_audit_record_json(const Sharebus__AuditRecord *r, const uint8_t *hash)
{
    assert(r);
    char when[32];
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "seq", json_object_new_uint64(r->seq));
    json_object_object_add(obj, "time_ms", json_object_new_uint64(r->time_ms));
    s_add_string(obj, "time", sbi_time_format(r->time_ms, when, sizeof when));
    s_add_string(obj, "kind", sbi_audit_kind_name(r->kind));
    s_add_hex(obj, "message_id", r->message_id);
    s_add_hex(obj, "correlation_id", r->correlation_id);
    s_add_string(obj, "from", r->from);
    s_add_string(obj, "to", r->to);
    s_add_string(obj, "dataset", r->dataset);
    s_add_string(obj, "purpose", r->purpose);
    s_add_hex(obj, "subject_ref", r->subject_ref);
    s_add_list(obj, "fields_requested", r->fields_requested, r->n_fields_requested);
    s_add_list(obj, "fields_delivered", r->fields_delivered, r->n_fields_delivered);
    s_add_string(obj, "decision", s_decision(r->decision));
    s_add_string(obj, "rule_id", r->rule_id);
    s_add_string(obj, "consent_id", r->consent_id);
    s_add_string(obj, "error", r->error ? sb_errname(sbi_error_code(r->error)) : "");
    s_add_string(obj, "reason", r->reason);
    s_add_hex(obj, "payload_hash", r->payload_hash);
    s_add_hex(obj, "header", r->header);
    s_add_hex(obj, "signature", r->signature);
    s_add_hex(obj, "batch_path", r->batch_path);
    json_object_object_add(obj, "batch_index", json_object_new_uint64(r->batch_index));
    s_add_hex(obj, "prev_hash", r->prev_hash);
    s_add_string(obj, "detail", r->detail);
    if (hash)
        s_add_hex(obj, "hash", (ProtobufCBinaryData){SBI_HASH_SIZE, (uint8_t *)hash});
    return obj;
}

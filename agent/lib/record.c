/*  record.c - sb_record_t: named, typed fields. */
#include "record.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    sb_field_type_t type;
    union {
        char *text;
        int64_t integer;
        double real;
        bool flag;
        struct {
            uint8_t *data;
            size_t size;
        } blob;
    } value;
} s_field_t;

struct sb_record_t {
    s_field_t *fields;
    size_t size;
    size_t capacity;
};

sb_record_t *sb_record_new(void)
{
    return calloc(1, sizeof(sb_record_t));
}

static void s_field_clear(s_field_t *field)
{
    if (field->type == SB_FIELD_TEXT)
        free(field->value.text);
    else if (field->type == SB_FIELD_BLOB)
        free(field->value.blob.data);
    field->type = SB_FIELD_NONE;
}

void sb_record_destroy(sb_record_t **self_p)
{
    sb_record_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    for (size_t i = 0; i < self->size; i++) {
        s_field_clear(&self->fields[i]);
        free(self->fields[i].name);
    }
    free(self->fields);
    free(self);
    *self_p = NULL;
}

static s_field_t *s_find(const sb_record_t *self, const char *name)
{
    for (size_t i = 0; name && i < self->size; i++)
        if (strcmp(self->fields[i].name, name) == 0)
            return &self->fields[i];
    return NULL;
}

/* The field to overwrite: existing (cleared) or a new one at the end. */
static int s_slot(sb_record_t *self, const char *name, s_field_t **field_p)
{
    if (!self || !sbi_name_valid(name))
        return SB_EINVAL;
    s_field_t *field = s_find(self, name);
    if (field) {
        s_field_clear(field);
        *field_p = field;
        return SB_OK;
    }
    if (self->size >= SBI_RECORD_FIELDS_MAX)
        return SB_ETOOBIG;
    if (self->size == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 8;
        s_field_t *grown = realloc(self->fields, capacity * sizeof *grown);
        if (!grown)
            return SB_ENOMEM;
        self->fields = grown;
        self->capacity = capacity;
    }
    field = &self->fields[self->size];
    memset(field, 0, sizeof *field);
    if (!(field->name = strdup(name)))
        return SB_ENOMEM;
    self->size++;
    *field_p = field;
    return SB_OK;
}

int sb_record_set_text(sb_record_t *self, const char *name, const char *value)
{
    if (!value || strlen(value) > SBI_VALUE_MAX)
        return value ? SB_ETOOBIG : SB_EINVAL;
    char *copy = strdup(value);
    s_field_t *field;
    int rc = copy ? s_slot(self, name, &field) : SB_ENOMEM;
    if (rc != SB_OK) {
        free(copy);
        return rc;
    }
    field->type = SB_FIELD_TEXT;
    field->value.text = copy;
    return SB_OK;
}

int sb_record_set_integer(sb_record_t *self, const char *name, int64_t value)
{
    s_field_t *field;
    int rc = s_slot(self, name, &field);
    if (rc == SB_OK) {
        field->type = SB_FIELD_INTEGER;
        field->value.integer = value;
    }
    return rc;
}

int sb_record_set_real(sb_record_t *self, const char *name, double value)
{
    if (!isfinite(value))
        return SB_EINVAL;   /* JSON has no NaN or infinity */
    s_field_t *field;
    int rc = s_slot(self, name, &field);
    if (rc == SB_OK) {
        field->type = SB_FIELD_REAL;
        field->value.real = value;
    }
    return rc;
}

int sb_record_set_flag(sb_record_t *self, const char *name, bool value)
{
    s_field_t *field;
    int rc = s_slot(self, name, &field);
    if (rc == SB_OK) {
        field->type = SB_FIELD_FLAG;
        field->value.flag = value;
    }
    return rc;
}

int sb_record_set_blob(sb_record_t *self, const char *name, const void *data, size_t size)
{
    if ((!data && size) || size > SBI_VALUE_MAX)
        return size > SBI_VALUE_MAX ? SB_ETOOBIG : SB_EINVAL;
    /* Copied before the slot is cleared: `data` may be the field's own value. */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy && size)
        memcpy(copy, data, size);
    s_field_t *field;
    int rc = copy ? s_slot(self, name, &field) : SB_ENOMEM;
    if (rc != SB_OK) {
        free(copy);
        return rc;
    }
    field->type = SB_FIELD_BLOB;
    field->value.blob.data = copy;
    field->value.blob.size = size;
    return SB_OK;
}

int sb_record_remove(sb_record_t *self, const char *name)
{
    s_field_t *field = self ? s_find(self, name) : NULL;
    if (!field)
        return SB_ENOTFOUND;
    s_field_clear(field);
    free(field->name);
    size_t index = (size_t) (field - self->fields);
    memmove(field, field + 1, (self->size - index - 1) * sizeof *field);
    self->size--;
    return SB_OK;
}

size_t sb_record_size(const sb_record_t *self)
{
    return self ? self->size : 0;
}

const char *sb_record_name(const sb_record_t *self, size_t index)
{
    return self && index < self->size ? self->fields[index].name : NULL;
}

sb_field_type_t sb_record_type(const sb_record_t *self, const char *name)
{
    s_field_t *field = self ? s_find(self, name) : NULL;
    return field ? field->type : SB_FIELD_NONE;
}

/* The field `name` if it has `type`: SB_OK, SB_ENOTFOUND or SB_EINVAL. */
static int s_typed(const sb_record_t *self, const char *name, sb_field_type_t type,
                   const s_field_t **field_p)
{
    const s_field_t *field = self ? s_find(self, name) : NULL;
    if (!field)
        return SB_ENOTFOUND;
    if (field->type != type)
        return SB_EINVAL;
    *field_p = field;
    return SB_OK;
}

int sb_record_text(const sb_record_t *self, const char *name, const char **value)
{
    const s_field_t *field;
    int rc = s_typed(self, name, SB_FIELD_TEXT, &field);
    if (rc == SB_OK)
        *value = field->value.text;
    return rc;
}

int sb_record_integer(const sb_record_t *self, const char *name, int64_t *value)
{
    const s_field_t *field;
    int rc = s_typed(self, name, SB_FIELD_INTEGER, &field);
    if (rc == SB_OK)
        *value = field->value.integer;
    return rc;
}

int sb_record_real(const sb_record_t *self, const char *name, double *value)
{
    const s_field_t *field;
    int rc = s_typed(self, name, SB_FIELD_REAL, &field);
    if (rc == SB_OK)
        *value = field->value.real;
    return rc;
}

int sb_record_flag(const sb_record_t *self, const char *name, bool *value)
{
    const s_field_t *field;
    int rc = s_typed(self, name, SB_FIELD_FLAG, &field);
    if (rc == SB_OK)
        *value = field->value.flag;
    return rc;
}

int sb_record_blob(const sb_record_t *self, const char *name, const void **data, size_t *size)
{
    const s_field_t *field;
    int rc = s_typed(self, name, SB_FIELD_BLOB, &field);
    if (rc == SB_OK) {
        *data = field->value.blob.data;
        *size = field->value.blob.size;
    }
    return rc;
}

char *sb_record_to_json(const sb_record_t *self)
{
    json_object *obj = json_object_new_object();
    for (size_t i = 0; self && i < self->size; i++) {
        const s_field_t *f = &self->fields[i];
        json_object *value = NULL;
        switch (f->type) {
        case SB_FIELD_TEXT: value = json_object_new_string(f->value.text); break;
        case SB_FIELD_INTEGER: value = json_object_new_int64(f->value.integer); break;
        case SB_FIELD_REAL: {
            /* Shortest text that reads back the same, not 17 digits. */
            char text[32];
            snprintf(text, sizeof text, "%.15g", f->value.real);
            if (strtod(text, NULL) != f->value.real)
                snprintf(text, sizeof text, "%.17g", f->value.real);
            value = json_object_new_double_s(f->value.real, text);
            break;
        }
        case SB_FIELD_FLAG: value = json_object_new_boolean(f->value.flag); break;
        case SB_FIELD_BLOB: {
            size_t len = sodium_base64_encoded_len(f->value.blob.size,
                                                   sodium_base64_VARIANT_ORIGINAL);
            char *b64 = malloc(len);
            if (b64) {
                sodium_bin2base64(b64, len, f->value.blob.data, f->value.blob.size,
                                  sodium_base64_VARIANT_ORIGINAL);
                value = json_object_new_string(b64);
                free(b64);
            }
            break;
        }
        default: break;
        }
        json_object_object_add(obj, f->name, value);
    }
    char *text = strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
    json_object_put(obj);
    return text;
}

static int s_set_json(sb_record_t *record, const char *name, json_object *value)
{
    switch (json_object_get_type(value)) {
    case json_type_string: {
        /* "\u0000" would cut the text at the first NUL */
        const char *text = json_object_get_string(value);
        if (strlen(text) != (size_t) json_object_get_string_len(value))
            return SB_EINVAL;
        return sb_record_set_text(record, name, text);
    }
    case json_type_int: {
        /* json-c clamps an integer beyond int64 to its nearest limit, and
           keeps a positive one up to 2^64 - 1 apart: those are refused, and
           with them INT64_MIN, which a clamp from below cannot be told from. */
        int64_t integer = json_object_get_int64(value);
        if (json_object_get_uint64(value) > INT64_MAX || integer == INT64_MIN)
            return SB_EINVAL;
        return sb_record_set_integer(record, name, integer);
    }
    case json_type_double: return sb_record_set_real(record, name, json_object_get_double(value));
    case json_type_boolean:
        return sb_record_set_flag(record, name, json_object_get_boolean(value));
    default: return SB_EINVAL;
    }
}

/* The one JSON value of `text`, NULL when anything but white space
   follows it (json_tokener_parse stops after the first value). */
static json_object *s_json_parse(const char *text)
{
    json_tokener *tokener = text ? json_tokener_new() : NULL;
    if (!tokener)
        return NULL;
    json_object *obj = json_tokener_parse_ex(tokener, text, -1);
    if (obj) {
        const char *rest = text + json_tokener_get_parse_end(tokener);
        if (rest[strspn(rest, " \t\r\n")] != 0)
            json_object_put(obj), obj = NULL;
    }
    json_tokener_free(tokener);
    return obj;
}

sb_record_t *sb_record_from_json(const char *json)
{
    json_object *obj = s_json_parse(json);
    sb_record_t *record = obj && json_object_is_type(obj, json_type_object) ? sb_record_new() : NULL;
    if (record) {
        json_object_object_foreach(obj, key, value) {
            if (s_set_json(record, key, value) != SB_OK) {
                sb_record_destroy(&record);
                break;
            }
        }
    }
    json_object_put(obj);
    return record;
}

Sharebus__Record *sbi_record_pb(const sb_record_t *record)
{
    size_t n = sb_record_size(record);
    Sharebus__Record *pb = malloc(sizeof *pb);
    Sharebus__Field *fields = calloc(n ? n : 1, sizeof *fields);
    Sharebus__Field **pointers = calloc(n ? n : 1, sizeof *pointers);
    if (!pb || !fields || !pointers) {
        free(pb), free(fields), free(pointers);
        return NULL;
    }
    sharebus__record__init(pb);
    for (size_t i = 0; i < n; i++) {
        const s_field_t *f = &record->fields[i];
        Sharebus__Field *out = &fields[i];
        sharebus__field__init(out);
        out->name = f->name;
        switch (f->type) {
        case SB_FIELD_TEXT:
            out->value_case = SHAREBUS__FIELD__VALUE_TEXT;
            out->text = f->value.text;
            break;
        case SB_FIELD_INTEGER:
            out->value_case = SHAREBUS__FIELD__VALUE_INTEGER;
            out->integer = f->value.integer;
            break;
        case SB_FIELD_REAL:
            out->value_case = SHAREBUS__FIELD__VALUE_REAL;
            out->real = f->value.real;
            break;
        case SB_FIELD_FLAG:
            out->value_case = SHAREBUS__FIELD__VALUE_FLAG;
            out->flag = f->value.flag;
            break;
        default:
            out->value_case = SHAREBUS__FIELD__VALUE_BLOB;
            out->blob.data = f->value.blob.data;
            out->blob.len = f->value.blob.size;
            break;
        }
        pointers[i] = out;
    }
    if (n == 0)
        pointers[0] = fields;   /* so that sbi_record_pb_free finds it */
    pb->n_fields = n;
    pb->fields = pointers;
    return pb;
}

void sbi_record_pb_free(Sharebus__Record **pb_p)
{
    Sharebus__Record *pb = *pb_p;
    if (!pb)
        return;
    if (pb->fields)
        free(pb->fields[0]);    /* the one array all fields live in */
    free(pb->fields);
    free(pb);
    *pb_p = NULL;
}

bool sbi_record_pb_valid(const Sharebus__Record *pb)
{
    if (pb->n_fields > SBI_RECORD_FIELDS_MAX)
        return false;
    for (size_t i = 0; i < pb->n_fields; i++) {
        const Sharebus__Field *f = pb->fields[i];
        if (!sbi_name_valid(f->name) || f->value_case == SHAREBUS__FIELD__VALUE__NOT_SET
            || (f->value_case == SHAREBUS__FIELD__VALUE_REAL && !isfinite(f->real)))
            return false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(pb->fields[j]->name, f->name) == 0)
                return false;
    }
    return true;
}

sb_record_t *sbi_record_from_pb(const Sharebus__Record *pb)
{
    if (!sbi_record_pb_valid(pb))
        return NULL;
    sb_record_t *record = sb_record_new();
    int rc = record ? SB_OK : SB_ENOMEM;
    for (size_t i = 0; rc == SB_OK && i < pb->n_fields; i++) {
        const Sharebus__Field *f = pb->fields[i];
        switch (f->value_case) {
        case SHAREBUS__FIELD__VALUE_TEXT: rc = sb_record_set_text(record, f->name, f->text); break;
        case SHAREBUS__FIELD__VALUE_INTEGER:
            rc = sb_record_set_integer(record, f->name, f->integer);
            break;
        case SHAREBUS__FIELD__VALUE_REAL: rc = sb_record_set_real(record, f->name, f->real); break;
        case SHAREBUS__FIELD__VALUE_FLAG: rc = sb_record_set_flag(record, f->name, f->flag); break;
        default: rc = sb_record_set_blob(record, f->name, f->blob.data, f->blob.len); break;
        }
    }
    if (rc != SB_OK)
        sb_record_destroy(&record);
    return record;
}

/*  admin.c - the broker's admin socket, DDIR/admin.sock: only the broker's
    own user can reach it (the socket file is mode 0600). Commands:
      RELOAD  -> "OK" VERSION | "FAIL" ERROR...
      STATUS  -> "OK" JSON
*/
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"

int broker_admin_open(broker_t *self)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/admin.sock", self->config.data);
    self->admin = zsock_new(ZMQ_REP);
    mode_t old = umask(0077);
    int rc = zsock_bind(self->admin, "ipc://%s", path);
    umask(old);
    if (rc < 0) {
        sbi_error("cannot bind the admin socket %s: %s", path, zmq_strerror(zmq_errno()));
        return -1;
    }
    chmod(path, 0600);
    return 0;
}

static json_object *s_status(broker_t *self)
{
    char hex[65];
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "uptime_s",
                           json_object_new_int64((zclock_mono() - self->started) / 1000));
    json_object_object_add(obj, "policy_version", json_object_new_string(
        sbi_hex(sbi_policy_version(self->policy), 32, hex)));
    json_object *agencies = json_object_new_array();
    for (broker_peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        json_object_array_add(agencies, json_object_new_string(p->agency));
    json_object_object_add(obj, "connected", agencies);
    uint8_t head[SBI_HASH_SIZE];
    json_object_object_add(obj, "audit_seq",
                           json_object_new_uint64(sbi_audit_head(self->audit, head)));
    json_object_object_add(obj, "pending_requests",
                           json_object_new_uint64(zhashx_size(self->pending)));
    size_t map_size, used;
    sbi_store_usage(self->store, &map_size, &used);
    json_object_object_add(obj, "store_map_bytes", json_object_new_uint64(map_size));
    json_object_object_add(obj, "store_used_bytes", json_object_new_uint64(used));
    json_object_object_add(obj, "store_full", json_object_new_boolean(self->store_full));
    json_object *counters = json_object_new_object();
    for (uint64_t *n = zhashx_first(self->counters); n; n = zhashx_next(self->counters))
        json_object_object_add(counters, zhashx_cursor(self->counters), json_object_new_uint64(*n));
    json_object_object_add(obj, "counters", counters);
    return obj;
}

void broker_admin_handle(broker_t *self)
{
    char *command = zstr_recv(self->admin);
    if (!command)
        return;
    if (strcmp(command, "RELOAD") == 0) {
        zlistx_t *errors = zlistx_new();
        zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
        if (broker_reload(self, errors) == 0) {
            char hex[65];
            zstr_sendx(self->admin, "OK", sbi_hex(sbi_policy_version(self->policy), 32, hex), NULL);
        }
        else {
            zmsg_t *reply = zmsg_new();
            zmsg_addstr(reply, "FAIL");
            for (char *e = zlistx_first(errors); e; e = zlistx_next(errors))
                zmsg_addstr(reply, e);
            zmsg_send(&reply, self->admin);
        }
        zlistx_destroy(&errors);
    }
    else if (strcmp(command, "STATUS") == 0) {
        json_object *status = s_status(self);
        zstr_sendx(self->admin, "OK", json_object_to_json_string_ext(status, JSON_C_TO_STRING_PLAIN),
                   NULL);
        json_object_put(status);
    }
    else
        zstr_sendx(self->admin, "FAIL", "unknown admin command", NULL);
    zstr_free(&command);
}

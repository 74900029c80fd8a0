/*  zap.c - who may connect: ZAP (ZeroMQ RFC 27) answered from the broker's
    own trust store.

    libzmq asks the handler bound at inproc://zeromq.zap.01 about every
    handshake on a socket of the process. The broker answers in its loop:
    a CURVE client is admitted when its key is that of a valid, unrevoked
    agency certificate, found in the trust store's hash table
    (sbi_trust_by_curve), so a handshake costs the same with 1,000
    agencies as with two, and a reload (certificates added, revoked)
    applies from the next handshake. An admitted connection's User-Id is
    its key in Z85, which the router maps back to the certificate.
    Connections without security (the metrics endpoint) are admitted, as
    CZMQ's zauth admits them by default; anything else is refused, which
    the router's monitor reports and the broker audits. */
#include "broker.h"

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"

zsock_t *broker_zap_new(void)
{
    zsock_t *zap = zsock_new(ZMQ_REP);
    if (zap && zsock_bind(zap, S_ZAP_ENDPOINT) != 0)
        zsock_destroy(&zap);
    return zap;
}

static bool s_frame_is(zframe_t *frame, const char *text)
{
    return frame && zframe_streq(frame, text);
}

/* True when the handshake is admitted, with its User-Id in `user`. */
static bool s_admit(broker_t *self, zframe_t *domain, zframe_t *mechanism, zframe_t *key,
                    char user[41])
{
    if (s_frame_is(mechanism, "NULL")) {
        user[0] = '\0';
        return true;
    }
    if (!s_frame_is(mechanism, "CURVE") || !s_frame_is(domain, "sharebus") || !key
        || zframe_size(key) != 32)
        return false;
    const sbi_cert_t *cert = sbi_trust_by_curve(self->trust, zframe_data(key));
    if (!cert || cert->kind != SBI_CERT_AGENCY
        || sbi_trust_check(self->trust, cert, sbi_now_ms()) != SB_OK)
        return false;
    zmq_z85_encode(user, zframe_data(key), 32);
    return true;
}

void broker_zap_handle(broker_t *self)
{
    zmsg_t *request = zmsg_recv(self->zap);
    if (!request)
        return;
    /* version, request id, domain, address, identity, mechanism, key */
    zframe_t *version = zmsg_first(request), *id = zmsg_next(request);
    zframe_t *domain = zmsg_next(request);
    zmsg_next(request);                 /* address */
    zmsg_next(request);                 /* identity */
    zframe_t *mechanism = zmsg_next(request), *key = zmsg_next(request);
    char user[41] = "";
    bool ok = s_frame_is(version, "1.0") && id && s_admit(self, domain, mechanism, key, user);
    zmsg_t *reply = zmsg_new();
    zmsg_addstr(reply, "1.0");
    zmsg_addmem(reply, id ? zframe_data(id) : NULL, id ? zframe_size(id) : 0);
    zmsg_addstr(reply, ok ? "200" : "400");
    zmsg_addstr(reply, ok ? "OK" : "not admitted");
    zmsg_addstr(reply, user);
    zmsg_addmem(reply, NULL, 0);        /* no metadata */
    zmsg_send(&reply, self->zap);
    zmsg_destroy(&request);
}

/*  verify.c - the broker checks the envelopes of a loop turn on two threads.

    Decoding an envelope and verifying its Ed25519 signature is most of the
    main thread's work per message (one verify is about 70 us here), and
    the main thread is the stage every round trip passes twice. So the
    messages of a loop turn are read first, then checked by the main thread
    and one helper thread together, the one from the front and the other
    from the back until they meet; the main thread then routes them in the
    order they came. Agents sign the envelopes of a loop turn together (a
    batch signature), and a thread that found one envelope of a batch good
    does not verify the same signature over the same root again. The
    helper touches only the messages of the turn and reads the trust store,
    which changes only between turns (a reload runs on the main thread),
    and nothing else of the broker.
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "broker.h"

struct broker_verifier_t {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;      /* a turn began, or stop */
    pthread_cond_t idle;      /* the helper left a turn */
    sbi_trust_t *trust;       /* the turn: read by the helper only while */
    broker_in_t *in;          /* `working` */
    size_t count;
    uint64_t now_ms;
    atomic_size_t claimed;    /* messages taken so far, from either end */
    unsigned turn;            /* counts turns, so the helper sees a new one */
    bool open;                /* the turn takes helpers */
    bool working;             /* the helper is in the turn */
    bool stop;
};

/* The last batched envelope a thread found good from each of a few
   connections: the ROUTER interleaves agencies, so a batch's envelopes
   are consecutive among its sender's, not among all. */
#define S_LIKES 8

typedef struct {
    const sbi_envelope_t *env[S_LIKES];
    size_t next;              /* the slot to reuse for a new sender */
} s_likes_t;

/* The slot of `cert`'s last good envelope, or one to reuse for it (whose
   envelope, another sender's, sbi_envelope_verify_like will not take). */
static const sbi_envelope_t **s_like_slot(s_likes_t *likes, const sbi_cert_t *cert)
{
    for (size_t i = 0; i < S_LIKES; i++)
        if (likes->env[i] && likes->env[i]->sender == cert)
            return &likes->env[i];
    return &likes->env[likes->next++ % S_LIKES];
}

/* Checks `in`, without verifying again a batch signature this thread
   found good for its sender (sbi_envelope_verify_like). */
static void s_check(broker_in_t *in, sbi_trust_t *trust, uint64_t now_ms, s_likes_t *likes)
{
    in->decode_rc = sbi_envelope_decode(&in->env, zframe_data(in->frame), zframe_size(in->frame));
    if (in->decode_rc != SB_OK) {
        in->verify_rc = in->decode_rc;
        return;
    }
    const sbi_envelope_t **like = s_like_slot(likes, in->cert);
    in->verify_rc = sbi_envelope_verify_like(&in->env, trust, in->cert, *like, now_ms);
    if (in->verify_rc == SB_OK && in->env.batched)
        *like = &in->env;
}

/* An agent's batch arrives as a run of its consecutive messages, so the
   main thread takes messages from the front and the helper from the back:
   each keeps to runs, and verifies each batch's signature about once.
   `claimed` counts the messages taken by either. */
static void s_work(broker_verifier_t *self, bool from_back)
{
    s_likes_t likes = {{NULL}, 0};
    size_t front = 0, back = self->count;
    while (atomic_fetch_add(&self->claimed, 1) < self->count)
        s_check(&self->in[from_back ? --back : front++], self->trust, self->now_ms, &likes);
}

static void *s_helper(void *arg)
{
    broker_verifier_t *self = arg;
    unsigned seen = 0;
    pthread_mutex_lock(&self->lock);
    while (true) {
        while (!self->stop && self->turn == seen)
            pthread_cond_wait(&self->wake, &self->lock);
        if (self->stop)
            break;
        seen = self->turn;
        if (!self->open)
            continue;           /* woke too late: the main thread did it all */
        self->working = true;
        pthread_mutex_unlock(&self->lock);
        s_work(self, true);
        pthread_mutex_lock(&self->lock);
        self->working = false;
        pthread_cond_signal(&self->idle);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

broker_verifier_t *broker_verifier_new(void)
{
    broker_verifier_t *self = calloc(1, sizeof *self);
    assert(self);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    pthread_cond_init(&self->idle, NULL);
    if (pthread_create(&self->thread, NULL, s_helper, self) != 0) {
        sbi_warning("no helper thread for verifying: the main thread verifies alone");
        pthread_mutex_destroy(&self->lock);
        pthread_cond_destroy(&self->wake);
        pthread_cond_destroy(&self->idle);
        free(self);
        return NULL;
    }
    return self;
}

void broker_verifier_destroy(broker_verifier_t **self_p)
{
    broker_verifier_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->wake);
    pthread_cond_destroy(&self->idle);
    free(self);
    *self_p = NULL;
}

void broker_verify(broker_verifier_t *self, sbi_trust_t *trust, broker_in_t *in, size_t count,
                   uint64_t now_ms)
{
    if (!self || count < 2) {
        s_likes_t likes = {{NULL}, 0};
        for (size_t i = 0; i < count; i++)
            s_check(&in[i], trust, now_ms, &likes);
        return;
    }
    pthread_mutex_lock(&self->lock);
    self->trust = trust;
    self->in = in;
    self->count = count;
    self->now_ms = now_ms;
    atomic_store(&self->claimed, 0);
    self->open = true;
    self->turn++;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);

    s_work(self, false);

    /* Every message is taken; wait for those the helper is checking. */
    pthread_mutex_lock(&self->lock);
    self->open = false;
    while (self->working)
        pthread_cond_wait(&self->idle, &self->lock);
    pthread_mutex_unlock(&self->lock);
}

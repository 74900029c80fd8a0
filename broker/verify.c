/*  verify.c - the broker checks the envelopes of a loop turn on two threads.

    Decoding an envelope and verifying its Ed25519 signature is most of the
    main thread's work per message (one verify is about 70 us here), and
    the main thread is the stage every round trip passes twice. Agents sign
    the envelopes of a loop turn together (a batch signature), and a thread
    that found one envelope of a batch good does not verify the same
    signature over the same root again. Then the
    messages of a loop turn are read first, then checked by the main thread
    and one helper thread together, each taking the next unchecked message
    until none is left; the main thread then routes them in the order they
    came. The helper touches only the messages of the turn and reads the
    trust store, which changes only between turns (a reload runs on the
    main thread), and nothing else of the broker.
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
    atomic_size_t next;       /* the next message nobody has taken */
    unsigned turn;            /* counts turns, so the helper sees a new one */
    bool open;                /* the turn takes helpers */
    bool working;             /* the helper is in the turn */
    bool stop;
};

/* Checks `in`; `like` is the last message this thread found good, whose
   batch signature need not be verified again (sbi_envelope_verify_like).
   Returns the one to pass next. */
static const sbi_envelope_t *s_check(broker_in_t *in, sbi_trust_t *trust, uint64_t now_ms,
                                     const sbi_envelope_t *like)
{
    in->decode_rc = sbi_envelope_decode(&in->env, zframe_data(in->frame), zframe_size(in->frame));
    in->verify_rc = in->decode_rc == SB_OK
                        ? sbi_envelope_verify_like(&in->env, trust, in->cert, like, now_ms)
                        : in->decode_rc;
    return in->verify_rc == SB_OK && in->env.batched ? &in->env : like;
}

/* An agent's batch arrives as a run of consecutive messages, so each
   thread verifies each batch's signature about once. */
static void s_work(broker_verifier_t *self)
{
    const sbi_envelope_t *like = NULL;
    size_t i;
    while ((i = atomic_fetch_add(&self->next, 1)) < self->count)
        like = s_check(&self->in[i], self->trust, self->now_ms, like);
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
        s_work(self);
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
        const sbi_envelope_t *like = NULL;
        for (size_t i = 0; i < count; i++)
            like = s_check(&in[i], trust, now_ms, like);
        return;
    }
    pthread_mutex_lock(&self->lock);
    self->trust = trust;
    self->in = in;
    self->count = count;
    self->now_ms = now_ms;
    atomic_store(&self->next, 0);
    self->open = true;
    self->turn++;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);

    s_work(self);

    /* Every message is taken; wait for those the helper is checking. */
    pthread_mutex_lock(&self->lock);
    self->open = false;
    while (self->working)
        pthread_cond_wait(&self->idle, &self->lock);
    pthread_mutex_unlock(&self->lock);
}

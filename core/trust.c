/*  trust.c - the trust store: root, revocation list, certificates by agency
    and by CURVE key. Loaded once; lookups are hash-table hits so they can
    sit on the per-message path. */
#include "cert.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sbi_trust_t {
    sbi_cert_t root;
    sbi_crl_t crl;
    sbi_cert_t *certs;      /* sorted by serial */
    size_t count;
    zhashx_t *by_agency;    /* agency -> newest unrevoked cert */
    zhashx_t *by_curve;     /* Z85 CURVE key -> cert */
};

static int s_by_serial(const void *a, const void *b)
{
    const sbi_cert_t *x = a, *y = b;
    return x->serial < y->serial ? -1 : x->serial > y->serial;
}

static bool s_is_cert_file(const char *name)
{
    size_t len = strlen(name);
    return len > 5 && strcmp(name + len - 5, ".cert") == 0 && strcmp(name, "root.cert") != 0;
}

static int s_load_certs(sbi_trust_t *self, const char *dir)
{
    DIR *handle = opendir(dir);
    if (!handle)
        return SB_EIO;
    struct dirent *entry;
    while ((entry = readdir(handle))) {
        if (!s_is_cert_file(entry->d_name))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        sbi_cert_t cert;
        int rc = sbi_cert_load(path, &cert);
        if (rc == SB_OK && cert.kind == SBI_CERT_ROOT)
            rc = SB_EMALFORMED;
        if (rc == SB_OK)
            rc = sbi_cert_verify(&cert, self->root.sign_public);
        if (rc != SB_OK) {
            sbi_warning("certificate %s left out: %s", path, sb_strerror(rc));
            continue;
        }
        sbi_cert_t *grown = realloc(self->certs, (self->count + 1) * sizeof *grown);
        if (!grown) {
            closedir(handle);
            return SB_ENOMEM;
        }
        self->certs = grown;
        self->certs[self->count++] = cert;
    }
    closedir(handle);
    qsort(self->certs, self->count, sizeof *self->certs, s_by_serial);
    return SB_OK;
}

static void s_index(sbi_trust_t *self)
{
    for (size_t i = 0; i < self->count; i++) {
        sbi_cert_t *cert = &self->certs[i];
        char z85[41];
        zmq_z85_encode(z85, cert->curve_public, 32);
        zhashx_update(self->by_curve, z85, cert);
        /* Ascending serials: the last unrevoked one wins. */
        if (!sbi_crl_revoked(&self->crl, cert->serial))
            zhashx_update(self->by_agency, cert->agency, cert);
    }
}

sbi_trust_t *sbi_trust_new(const char *dir, char *err, size_t err_size)
{
    sbi_trust_t *self = calloc(1, sizeof *self);
    assert(self);
    self->by_agency = zhashx_new();
    self->by_curve = zhashx_new();
    char path[4096];
    snprintf(path, sizeof path, "%s/root.cert", dir);
    int rc = sbi_cert_load(path, &self->root);
    if (rc != SB_OK || self->root.kind != SBI_CERT_ROOT
        || sbi_cert_verify(&self->root, self->root.sign_public) != SB_OK) {
        snprintf(err, err_size, "%s: %s", path,
                 rc == SB_EIO ? strerror(errno) : "not a valid sharebus root certificate");
        sbi_trust_destroy(&self);
        return NULL;
    }
    snprintf(path, sizeof path, "%s/revoked.crl", dir);
    rc = sbi_crl_load(path, &self->crl);
    if (rc == SB_OK && sbi_crl_verify(&self->crl, self->root.sign_public) != SB_OK)
        rc = SB_EBADCERT;
    if (rc != SB_OK && rc != SB_ENOTFOUND) {
        snprintf(err, err_size, "%s: %s", path,
                 rc == SB_EIO ? strerror(errno)
                 : rc == SB_EBADCERT ? "revocation list not signed by the root"
                                     : "malformed revocation list");
        sbi_trust_destroy(&self);
        return NULL;
    }
    if (s_load_certs(self, dir) != SB_OK) {
        snprintf(err, err_size, "%s: %s", dir, strerror(errno));
        sbi_trust_destroy(&self);
        return NULL;
    }
    s_index(self);
    return self;
}

void sbi_trust_destroy(sbi_trust_t **self_p)
{
    sbi_trust_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->by_agency);
    zhashx_destroy(&self->by_curve);
    sbi_crl_clear(&self->crl);
    free(self->certs);
    free(self);
    *self_p = NULL;
}

const uint8_t *sbi_trust_root(sbi_trust_t *self)
{
    return self->root.sign_public;
}

const sbi_cert_t *sbi_trust_find(sbi_trust_t *self, const char *agency)
{
    return zhashx_lookup(self->by_agency, agency);
}

const sbi_cert_t *sbi_trust_by_curve(sbi_trust_t *self, const uint8_t curve_public[32])
{
    char z85[41];
    zmq_z85_encode(z85, curve_public, 32);
    return zhashx_lookup(self->by_curve, z85);
}

int sbi_trust_check(sbi_trust_t *self, const sbi_cert_t *cert, uint64_t now_ms)
{
    if (sbi_crl_revoked(&self->crl, cert->serial))
        return SB_EREVOKED;
    if (now_ms < cert->not_before_ms || now_ms > cert->not_after_ms)
        return SB_EEXPIRED;
    return SB_OK;
}

size_t sbi_trust_count(sbi_trust_t *self)
{
    return self->count;
}

const sbi_cert_t *sbi_trust_at(sbi_trust_t *self, size_t index)
{
    return index < self->count ? &self->certs[index] : NULL;
}

const sbi_crl_t *sbi_trust_crl(sbi_trust_t *self)
{
    return &self->crl;
}

void sbi_trust_prefer(sbi_trust_t *self, const sbi_cert_t *cert)
{
    assert(cert >= self->certs && cert < self->certs + self->count);
    if (zhashx_lookup(self->by_agency, cert->agency) != cert
        && !sbi_crl_revoked(&self->crl, cert->serial))
        zhashx_update(self->by_agency, cert->agency, (void *) cert);
}

void sbi_trust_inherit(sbi_trust_t *self, sbi_trust_t *from)
{
    for (size_t i = 0; i < self->count; i++) {
        const sbi_cert_t *cert = &self->certs[i];
        const sbi_cert_t *preferred = zhashx_lookup(from->by_agency, cert->agency);
        if (preferred && preferred->serial == cert->serial
            && memcmp(preferred->sign_public, cert->sign_public, 32) == 0)
            sbi_trust_prefer(self, cert);
    }
}

const sbi_cert_t *sbi_trust_newest(sbi_trust_t *self, const char *agency, uint64_t now_ms)
{
    /* Sorted by serial: the last valid one wins. */
    for (size_t i = self->count; i-- > 0;)
        if (strcmp(self->certs[i].agency, agency) == 0
            && sbi_trust_check(self, &self->certs[i], now_ms) == SB_OK)
            return &self->certs[i];
    return NULL;
}

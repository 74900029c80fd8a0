/*  errors.c - names and sentences of the SB_E* codes. */
#include "sbi.h"

#include <string.h>

static const struct {
    const char *name;
    const char *text;
} s_errors[] = {
    [0] = {"ok", "success"},
    [1] = {"invalid", "invalid argument"},
    [2] = {"no-memory", "out of memory"},
    [3] = {"io", "system or file error"},
    [4] = {"malformed", "malformed message"},
    [5] = {"too-big", "over a size limit"},
    [6] = {"bad-signature", "signature, MAC or payload hash does not verify"},
    [7] = {"bad-certificate", "certificate not valid under the root"},
    [8] = {"revoked", "certificate revoked"},
    [9] = {"expired", "outside its validity period"},
    [10] = {"unknown-agency", "unknown agency"},
    [11] = {"wrong-sender", "sender is not the authenticated agency"},
    [12] = {"replay", "message already seen"},
    [13] = {"stale", "timestamp outside the clock-skew window"},
    [14] = {"denied", "no policy rule allows it"},
    [15] = {"unknown-dataset", "dataset or topic not declared"},
    [16] = {"no-consent", "no active consent"},
    [17] = {"rate-limited", "rate limit reached"},
    [18] = {"unavailable", "peer or service unavailable"},
    [19] = {"timeout", "deadline passed"},
    [20] = {"exists", "already exists"},
    [21] = {"not-found", "not found"},
    [22] = {"full", "store or queue full"},
    [23] = {"protocol", "unexpected message"},
    [24] = {"fields", "fields beyond what was asked or allowed"},
    [25] = {"internal", "internal error"},
};

static size_t s_index(int code)
{
    return code <= 0 && code >= SB_ERROR_MIN ? (size_t) -code : (size_t) -SB_EINTERNAL;
}

const char *sb_strerror(int code)
{
    return s_errors[s_index(code)].text;
}

const char *sb_errname(int code)
{
    return s_errors[s_index(code)].name;
}

int sb_errcode(const char *name)
{
    for (size_t i = 0; name && i < sizeof s_errors / sizeof s_errors[0]; i++)
        if (strcmp(s_errors[i].name, name) == 0)
            return -(int) i;
    return SB_EINVAL;
}

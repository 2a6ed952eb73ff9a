/* chat_room.c - where a room lives: its ingest shard, and the ids of direct
 * rooms. */
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <string.h>

#include "chat.h"

unsigned chat_room_shard(const char *room, size_t len, unsigned nshards)
{
    return nshards ? pr_fnv1a32(room, len) % nshards : 0;
}

void chat_dm_key(const char *room_secret, const char *jwt_secret, unsigned char key[32])
{
    if (room_secret && room_secret[0])
        SHA256((const unsigned char *)room_secret, strlen(room_secret), key);
    else if (jwt_secret && jwt_secret[0])
        HMAC(EVP_sha256(), jwt_secret, (int)strlen(jwt_secret),
             (const unsigned char *)"chat direct room ids v1", 23, key, NULL);
    else /* insecure-dev without secrets: room ids are guessable, as everything else is */
        SHA256((const unsigned char *)"insecure-dev room ids", 21, key);
}

/* A keyed hash of the sorted pair, so both orders give the same id and
 * nobody can compute it without the key. */
void chat_dm_room_id(const unsigned char key[32], const char *a, const char *b,
                     char out[CHAT_DM_ID_LEN + 1])
{
    if (strcmp(a, b) > 0) {
        const char *t = a;
        a = b;
        b = t;
    }
    /* ids are at most CHAT_ID_MAX bytes; longer input is cut (callers
     * validate ids first, so this only bounds the buffer) */
    char in[2 * CHAT_ID_MAX + 1];
    size_t la = strnlen(a, CHAT_ID_MAX), lb = strnlen(b, CHAT_ID_MAX);
    memcpy(in, a, la);
    in[la] = '\n';
    memcpy(in + la + 1, b, lb);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)in, la + 1 + lb, mac, &maclen);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    memcpy(out, "dm_", 3);
    for (int i = 0; i < 22; i++) /* 132 bits */
        out[3 + i] = b64[mac[i] & 63];
    out[CHAT_DM_ID_LEN] = '\0';
}

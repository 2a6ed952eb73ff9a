/*
 * sio.h - Socket.IO v5 packet codec, with binary attachment reassembly.
 *
 * Packet text: <type>[<attachments>-][<nsp>,][<id>][<json>]
 * JSON is parsed with jansson; placeholders {"_placeholder":true,"num":N}
 * stay in the JSON and index into the packet's attachment list, so a packet
 * can be re-encoded (echoed, relayed) without touching its binaries.
 * No I/O; allocation failure aborts (pr_alloc).
 */
#ifndef SIO_H
#define SIO_H

#include <jansson.h>
#include "pr.h"

typedef enum {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
} sio_type;

#define SIO_MAX_ATTACHMENTS 64
#define SIO_NSP_MAX 256

typedef struct {
    char *ptr; /* pr_malloc'd */
    size_t len;
} sio_attachment;

typedef struct {
    sio_type type;
    char nsp[SIO_NSP_MAX]; /* NUL-terminated; "/" when absent */
    int64_t id;            /* ack id, -1 when absent */
    unsigned attachments;  /* announced count (binary types) */
    json_t *data;          /* owned; NULL when absent */
    unsigned nattached;    /* attachments received so far */
    sio_attachment att[SIO_MAX_ATTACHMENTS];
} sio_packet;

/*
 * Decodes the text part of a packet (as received by the server). Checks the
 * shape the specification requires of each type from a client:
 *   CONNECT: data absent or an object; DISCONNECT: no data;
 *   EVENT/BINARY_EVENT: a non-empty array whose first element is a string;
 *   ACK/BINARY_ACK: an array and an id; CONNECT_ERROR: rejected (server-only);
 *   binary types: 1..SIO_MAX_ATTACHMENTS attachments, every placeholder num
 *   below that count; non-binary types: no attachment prefix.
 * The id is 0..2^53-1 and only allowed on EVENT/ACK types. nsp starts with
 * '/' and ends at the first ',' or, without one, at the end of the text (as
 * in the reference parser: "1/admin" is DISCONNECT of "/admin"); control
 * bytes and bad UTF-8 in it are PR_EINVAL. JSON nested deeper than 32 is
 * PR_EINVAL. A lone UTF-16 surrogate escape in a JSON string decodes as
 * U+FFFD (sio_lone_surrogates). A nsp of SIO_NSP_MAX bytes or more, or more than
 * SIO_MAX_ATTACHMENTS attachments, is PR_ETOOBIG.
 * On success *out owns data (free with sio_packet_dispose); on error *out
 * holds nothing to free.
 */
int sio_decode(pr_view text, sio_packet *out);
/*
 * Counts the escapes \uD800-\uDFFF inside JSON strings of p[0..n) that are
 * not half of a high+low pair; with fix (a copy of p, same length) rewrites
 * each there to \uFFFD. sio_decode does this before parsing, so a lone
 * surrogate (JSON.stringify of text cut inside an emoji) decodes as U+FFFD
 * instead of failing the packet.
 */
size_t sio_lone_surrogates(const char *p, size_t n, char *fix);
/* 1 when every announced attachment has arrived. */
static inline int sio_packet_complete(const sio_packet *p) { return p->nattached == p->attachments; }
/* Adds the next binary attachment (copied). PR_ESTATE if none is expected,
 * PR_ETOOBIG if the running total would exceed max_total bytes. */
int sio_add_attachment(sio_packet *p, pr_view bin, size_t max_total);
void sio_packet_dispose(sio_packet *p);

/*
 * Appends the text form of a packet. nsp "/" (or empty) is omitted, any other
 * is followed by ','; id < 0 is omitted; attachments > 0 writes "<n>-" (for
 * binary types). data may be NULL. JSON is compact, UTF-8, key order preserved.
 * PR_EINVAL for a binary type without attachments or attachments on another
 * type, or an id above 2^53-1. Leaves out unchanged on error.
 */
int sio_encode(pr_buf *out, sio_type type, const char *nsp, int64_t id, unsigned attachments,
               const json_t *data);

/* 1 if j is {"_placeholder":true,"num":<int>} and stores num. */
int sio_is_placeholder(const json_t *j, int64_t *num);

#endif

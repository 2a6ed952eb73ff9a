/*
 * eio.h - Engine.IO v4 packet and long-polling payload codec.
 *
 * Pure functions over byte views; no I/O, no allocation except into the
 * caller's pr_buf. Decoders are strict: anything the specification does not
 * allow is PR_EINVAL, never a guess.
 */
#ifndef EIO_H
#define EIO_H

#include "pr.h"

typedef enum {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
} eio_type;

#define EIO_RECORD_SEPARATOR '\x1e'

typedef struct {
    eio_type type;
    int binary;   /* 1: data is raw bytes (only with EIO_MESSAGE) */
    pr_view data; /* the packet body after the type byte; may be empty */
} eio_packet;

/* A WebSocket text frame: "<digit><data>". Digit must be 0..6; data must be
 * valid UTF-8 (the specification's text encoding). */
int eio_decode_text(pr_view frame, eio_packet *out);
/* A WebSocket binary frame: always a binary EIO_MESSAGE with the whole frame. */
void eio_decode_binary(pr_view frame, eio_packet *out);

/*
 * Long-polling payloads: records separated by 0x1e. Call eio_payload_next
 * until it returns 0; each record is then decoded by eio_decode_record.
 * Returns 1 and sets *record when a record was produced, 0 at the end.
 * An empty payload or an empty record is PR_EINVAL.
 */
int eio_payload_next(pr_view *rest, pr_view *record);
/* A record is a text packet, or "b<base64>" for a binary message whose bytes
 * are decoded into bin (reset first); out->data then points into bin. */
int eio_decode_record(pr_view record, eio_packet *out, pr_buf *bin);

/* Appends "<digit><data>" (a text WebSocket frame or a polling record). */
int eio_encode_text(pr_buf *out, eio_type type, pr_view data);
/* Appends one packet to a polling payload being built in out: a separator
 * first when out is not empty, then the text record or "b" + base64.
 * Text data containing 0x1e cannot be framed: PR_EINVAL. All encoders leave
 * out unchanged on error. */
int eio_payload_append(pr_buf *out, eio_type type, int binary, pr_view data);
/* Appends the open packet: 0{"sid":..,"upgrades":[..],"pingInterval":..,
 * "pingTimeout":..,"maxPayload":..}. A sid holding anything but
 * printable ASCII other than '"' and backslash is PR_EINVAL (no escaping). */
int eio_encode_open(pr_buf *out, pr_view sid, int offer_websocket, unsigned ping_interval_ms,
                    unsigned ping_timeout_ms, size_t max_payload);

#endif

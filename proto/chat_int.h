/*
 * chat_int.h - internal to proto's chat files (chat__ prefix): the pieces
 * the line-based text codecs share (chat_text.c). Not for use outside proto/.
 */
#ifndef CHAT_INT_H
#define CHAT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pr.h"

#define CHAT_NUM_MAX 9007199254740991LL /* 2^53 - 1: exact in JSON numbers */

/* 1..16 decimal digits (leading zeros allowed), at most CHAT_NUM_MAX. */
int chat__parse_digits(pr_view v, int64_t *out);
/* Strict decimal: "0" or [1-9][0-9]*, or "-1" when allow_minus_one; at most
 * CHAT_NUM_MAX. */
int chat__parse_num(pr_view v, int allow_minus_one, int64_t *out);
/* Cuts *it at the first delim into *field (advancing past delim); max
 * bounds the search (0: unbounded). PR_EINVAL without delim. */
int chat__take(pr_view *it, char delim, size_t max, pr_view *field);
/* chat__take of an id (chat_id_valid) or a number (chat__parse_num). */
int chat__take_id(pr_view *it, char delim, pr_view *id);
int chat__take_num(pr_view *it, char delim, int allow_minus_one, int64_t *n);
int chat__id_ok(pr_view v); /* chat_id_valid */
/* A JSON text in a line: not empty, no newline (compact JSON has none). */
int chat__line_ok(pr_view v);
/* Appends parts[0..n) to out, all or nothing. */
int chat__append_all(pr_buf *out, const pr_view *parts, unsigned n);
/* n in decimal in buf. */
/* n in decimal, without snprintf (hot: offsets, envelopes); not terminated.
 * chat__u64_dec returns the length (1 to 20). */
size_t chat__u64_dec(char buf[20], uint64_t n);
pr_view chat__num_view(char buf[24], int64_t n);

#endif

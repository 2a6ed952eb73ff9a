/* chat-load: the command line. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

const char *const ld_mode_names[] = {"dm", "room", "typing", "idle", "connect"};

ld_options ld_opt = {
    .conns = 100,
    .procs = 1,
    .senders = 1,
    .rate = 1000,
    .warmup = 1,
    .duration = 5,
    .path = "/socket.io/",
    .prefix = "load",
};

int ld_has_room(void)
{
    return ld_opt.mode == M_ROOM || ld_opt.mode == M_TYPING;
}

/* Senders are users 0..ld_total_senders()-1: everyone in dm mode, the first
 * --senders in room and typing modes. */
unsigned ld_total_senders(void)
{
    switch (ld_opt.mode) {
    case M_DM:
        return ld_opt.conns;
    case M_ROOM:
    case M_TYPING:
        return ld_opt.senders;
    default:
        return 0;
    }
}

static int parse_addrs(const char *s, int with_port, struct sockaddr_in *sa, struct in_addr *ia,
                       unsigned *n)
{
    char *copy = strdup(s), *save = NULL;
    *n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= MAX_ADDRS)
            goto bad;
        char *colon = strrchr(tok, ':');
        if (with_port) {
            if (!colon)
                goto bad;
            *colon = '\0';
            sa[*n].sin_family = AF_INET;
            sa[*n].sin_port = htons((uint16_t)atoi(colon + 1));
            if (inet_pton(AF_INET, tok, &sa[*n].sin_addr) != 1)
                goto bad;
        } else if (inet_pton(AF_INET, tok, &ia[*n]) != 1) {
            goto bad;
        }
        (*n)++;
    }
    free(copy);
    return *n ? 0 : -1;
bad:
    free(copy);
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chat-load --target HOST:PORT[,...] --secret JWT_SECRET [options]\n"
            "  --mode M         dm|room|typing|idle|connect (see the source's header)  [dm]\n"
            "  --conns N        connections in all (dm: even, pairs of users)  [100]\n"
            "  --procs P        processes                                    [1]\n"
            "  --rate R         messages (or typings) per second in all      [1000]\n"
            "  --room ID        room and typing modes: the room to join\n"
            "  --senders K      room and typing modes: the first K users send  [1]\n"
            "  --warmup S       seconds sent before measuring                [1]\n"
            "  --duration S     seconds measured                             [5]\n"
            "  --source A[,...] local addresses to bind, round robin\n"
            "  --prefix P       user ids are P0, P1, ...                     [load]\n"
            "  --pad N          bytes added to each text                     [0]\n"
            "  --path P         Socket.IO path                               [/socket.io/]\n"
            "  --json           also print the summary as JSON\n"
            "Connection i goes to target i mod (number of targets).\n");
}

static int parse_mode(const char *s)
{
    for (int i = 0; i < (int)(sizeof ld_mode_names / sizeof *ld_mode_names); i++)
        if (!strcmp(s, ld_mode_names[i]))
            return i;
    return -1;
}

static int options_valid(void)
{
    if (ld_opt.mode < 0 || !ld_opt.secret || ld_opt.procs < 1 || ld_opt.procs > MAX_PROCS ||
        ld_opt.conns < ld_opt.procs || ld_opt.duration <= 0 || ld_opt.warmup < 0 ||
        ld_opt.rate <= 0)
        return 0;
    switch (ld_opt.mode) {
    case M_DM:
        return ld_opt.conns % 2 == 0 && ld_opt.conns / ld_opt.procs >= 2;
    case M_ROOM:
    case M_TYPING:
        return ld_opt.room && strlen(ld_opt.room) < 128 && ld_opt.senders >= 1 &&
               ld_opt.senders <= MAX_SENDERS && ld_opt.senders <= ld_opt.conns &&
               (ld_opt.mode == M_ROOM || ld_opt.conns >= 2);
    default:
        return 1;
    }
}

int ld_options_parse(int argc, char **argv)
{
    const char *targets = NULL, *sources = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(a, "--json")) {
            ld_opt.json = 1;
            used = 0;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!v) {
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--target"))
            targets = v;
        else if (!strcmp(a, "--source"))
            sources = v;
        else if (!strcmp(a, "--secret"))
            ld_opt.secret = v;
        else if (!strcmp(a, "--mode"))
            ld_opt.mode = parse_mode(v);
        else if (!strcmp(a, "--room"))
            ld_opt.room = v;
        else if (!strcmp(a, "--senders"))
            ld_opt.senders = (unsigned)atoi(v);
        else if (!strcmp(a, "--conns"))
            ld_opt.conns = (unsigned)atoi(v);
        else if (!strcmp(a, "--procs"))
            ld_opt.procs = (unsigned)atoi(v);
        else if (!strcmp(a, "--rate"))
            ld_opt.rate = atof(v);
        else if (!strcmp(a, "--warmup"))
            ld_opt.warmup = atof(v);
        else if (!strcmp(a, "--duration"))
            ld_opt.duration = atof(v);
        else if (!strcmp(a, "--prefix"))
            ld_opt.prefix = v;
        else if (!strcmp(a, "--pad"))
            ld_opt.text_pad = (unsigned)atoi(v);
        else if (!strcmp(a, "--path"))
            ld_opt.path = v;
        else {
            usage(stderr);
            return 2;
        }
        i += used;
    }
    if (!targets || !options_valid() ||
        parse_addrs(targets, 1, ld_opt.target, NULL, &ld_opt.ntarget) ||
        (sources && parse_addrs(sources, 0, NULL, ld_opt.source, &ld_opt.nsource))) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/*
 * static.c - files served from memory: the Socket.IO browser client under
 * the Engine.IO path (what the Node server's serveClient does) and an
 * optional web root at /.
 *
 * Everything is read once, at start-up, on the main thread before any worker
 * exists: each file becomes an immortal blob (GW_BLOB_IMMORTAL) that every
 * worker queues on its sockets without copying or counting, with its content
 * type and a strong ETag (a SHA-256 prefix of its bytes) computed once. A
 * request is a lookup in a sorted table: no request opens a file, so no path
 * a client sends, however encoded, reaches anything but what was loaded. The
 * walk of the web root never leaves it either: a symbolic link is followed
 * only when its target lies inside the root, and hidden names (".git",
 * ".env") are not loaded.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_static.h"

/* The web root must fit in memory: a directory given by mistake (/) stops
 * start-up instead of being read whole. */
#define GW_STATIC_MAX_FILES 10000
#define GW_STATIC_MAX_BYTES ((size_t)256 << 20)
#define GW_STATIC_MAX_DEPTH 16

typedef struct {
    gw_static_file *v;
    size_t n, cap;
    size_t bytes;
} file_table;

static file_table client_files, web_files;
static int web_root_on;

/* socket.io-client's dist files that speak our protocol. Node also serves
 * the msgpack build, whose parser this gateway does not speak: a page that
 * loaded it could never connect, so it is not served. */
static const char *const client_names[] = {
    "socket.io.js",         "socket.io.js.map",     "socket.io.min.js",
    "socket.io.min.js.map", "socket.io.esm.min.js", "socket.io.esm.min.js.map",
};

/* ---- pure helpers ---- */

static const struct {
    const char *ext, *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"map", "application/json; charset=utf-8"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
};

const char *gw__static_mime(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base)
        for (size_t i = 0; i < sizeof mime_types / sizeof mime_types[0]; i++)
            if (!strcasecmp(dot + 1, mime_types[i].ext))
                return mime_types[i].type;
    /* with nosniff, a browser neither runs nor renders what it cannot name */
    return "application/octet-stream";
}

int gw__static_clean_path(pr_view path, char *out, size_t cap)
{
    if (cap == 0)
        return PR_ETOOBIG;
    if (path.len == 0 || path.ptr[0] != '/')
        return PR_EINVAL;
    size_t n = 0;
    /* Decode first, then judge the segments: "%2e%2e" is "..", "%2f" a '/'. */
    for (size_t i = 1; i < path.len; i++) {
        int ch = (unsigned char)path.ptr[i];
        if (ch == '%') {
            int hi = i + 2 < path.len ? pr_hex_digit(path.ptr[i + 1]) : -1;
            int lo = i + 2 < path.len ? pr_hex_digit(path.ptr[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return PR_EINVAL;
            ch = hi << 4 | lo;
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f || ch == '\\') /* NUL, controls, DOS separators */
            return PR_EINVAL;
        if (n + 1 >= cap)
            return PR_ETOOBIG;
        out[n++] = (char)ch;
    }
    out[n] = '\0';
    /* Every segment must name something: no "", "." or "..". A trailing '/'
     * (or "/" alone) names the directory's index.html. */
    size_t seg = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && out[i] != '/')
            continue;
        size_t len = i - seg;
        if (i == n && len == 0)
            break; /* "" or "dir/": the index */
        if (len == 0 || (len == 1 && out[seg] == '.') ||
            (len == 2 && out[seg] == '.' && out[seg + 1] == '.'))
            return PR_EINVAL;
        seg = i + 1;
    }
    if (n == 0 || out[n - 1] == '/') {
        static const char index[] = "index.html";
        if (n + sizeof index > cap)
            return PR_ETOOBIG;
        memcpy(out + n, index, sizeof index);
        n += sizeof index - 1;
    }
    return (int)n;
}

static pr_view trim(pr_view v)
{
    while (v.len && (v.ptr[0] == ' ' || v.ptr[0] == '\t')) {
        v.ptr++;
        v.len--;
    }
    while (v.len && (v.ptr[v.len - 1] == ' ' || v.ptr[v.len - 1] == '\t'))
        v.len--;
    return v;
}

int gw__static_etag_match(pr_view header, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = header.ptr, *end = header.ptr + header.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        pr_view item = trim(pr_view_make(p, (size_t)(e - p)));
        if (item.len == 1 && item.ptr[0] == '*')
            return 1;
        /* If-None-Match compares weakly: W/"x" matches "x" */
        if (item.len > 2 && item.ptr[0] == 'W' && item.ptr[1] == '/') {
            item.ptr += 2;
            item.len -= 2;
        }
        if (item.len == elen && !memcmp(item.ptr, etag, elen))
            return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

/* ---- loading ---- */

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const gw_static_file *)a)->name, ((const gw_static_file *)b)->name);
}

static const gw_static_file *table_find(const file_table *t, const char *name)
{
    gw_static_file key = {.name = (char *)name};
    if (t->n == 0)
        return NULL;
    return bsearch(&key, t->v, t->n, sizeof *t->v, cmp_file);
}

static void table_dispose(file_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        pr_free(t->v[i].name);
        pr_free(t->v[i].body); /* immortal: never freed by a count */
    }
    pr_free(t->v);
    memset(t, 0, sizeof *t);
}

/*
 * Reads the regular file at path (at most max bytes) into a new immortal
 * blob. NULL with *why set on failure.
 */
static gw_blob *read_whole(const char *path, size_t max, const char **why)
{
    gw_blob *b = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd == -1 || fstat(fd, &st) != 0) {
        *why = strerror(errno);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        goto out;
    }
    if ((unsigned long long)st.st_size > max) {
        *why = "too large";
        goto out;
    }
    b = gw__blob_new((size_t)st.st_size);
    size_t got = 0;
    while (got < b->len) {
        ssize_t r = read(fd, b->data + got, b->len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *why = r < 0 ? strerror(errno) : "changed while being read";
            pr_free(b);
            b = NULL;
            goto out;
        }
        got += (size_t)r;
    }
    b->refs = GW_BLOB_IMMORTAL;
out:
    if (fd != -1)
        close(fd);
    return b;
}

static void table_add(file_table *t, const char *name, const char *ctype, const char *cache,
                      gw_blob *body)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->v = pr_realloc(t->v, t->cap * sizeof *t->v);
    }
    gw_static_file *f = &t->v[t->n++];
    memset(f, 0, sizeof *f);
    size_t len = strlen(name);
    f->name = pr_malloc(len + 1);
    memcpy(f->name, name, len + 1);
    f->ctype = ctype;
    f->cache = cache;
    f->body = body;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)body->data, body->len, md);
    char *e = f->etag;
    *e++ = '"';
    for (int i = 0; i < 8; i++)
        e += sprintf(e, "%02x", md[i]);
    *e++ = '"';
    *e = '\0';
    t->bytes += body->len;
}

/* The default --client-dir: ../share/chat/socket.io-client beside the
 * directory of the program (build/bin -> build/share, /usr/local/bin ->
 * /usr/local/share), where the build and the Dockerfile put the files. */
static int default_client_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    int w = snprintf(out, cap, "%s/../share/chat/socket.io-client", exe);
    return w > 0 && (size_t)w < cap ? 0 : -1;
}

static int load_client(const gw_config *cfg)
{
    char dir[PATH_MAX + 64];
    int explicit_dir = cfg->client_dir[0] != '\0';
    if (explicit_dir)
        snprintf(dir, sizeof dir, "%s", cfg->client_dir);
    else if (default_client_dir(dir, sizeof dir) != 0)
        dir[0] = '\0';
    for (size_t i = 0; dir[0] && i < sizeof client_names / sizeof client_names[0]; i++) {
        char path[PATH_MAX + 128];
        const char *why = NULL;
        snprintf(path, sizeof path, "%s/%s", dir, client_names[i]);
        gw_blob *b = read_whole(path, cfg->output_hard_limit / 2, &why);
        if (!b) {
            if (explicit_dir) {
                /* asked for and absent: the operator must know now */
                fprintf(stderr,
                        "chat-gateway: invalid value for --client-dir (CHAT_CLIENT_DIR): "
                        "'%s': %s: %s (turn serving off with --serve-client off)\n",
                        cfg->client_dir, client_names[i], why);
                return -1;
            }
            /* a build without the npm package (tests, a bare cmake): the
             * gateway runs, the client files answer 404 */
            CM_WARN("event=client_files_missing dir=%s file=%s error=\"%s\" msg=\"/socket.io/"
                    "socket.io.js is not served: install web/client (scripts/dev.sh does) and "
                    "rebuild, or set --client-dir\"",
                    dir, client_names[i], why);
            table_dispose(&client_files);
            return 0;
        }
        int map = strstr(client_names[i], ".map") != NULL;
        /* Node's headers: revalidated on every use, cheap with the ETag */
        table_add(&client_files, client_names[i],
                  map ? "application/json; charset=utf-8" : "application/javascript; charset=utf-8",
                  "public, max-age=0", b);
    }
    qsort(client_files.v, client_files.n, sizeof *client_files.v, cmp_file);
    if (client_files.n)
        CM_INFO("event=client_files dir=%s files=%zu", dir, client_files.n);
    return 0;
}

static int web_error(const gw_config *cfg, const char *what, const char *why)
{
    fprintf(stderr, "chat-gateway: invalid value for --web-root (CHAT_WEB_ROOT): '%s': %s%s%s\n",
            cfg->web_root, what, *what ? ": " : "", why);
    return -1;
}

/* Loads the files under dir (real path, inside root) as rel/NAME. */
static int walk(const gw_config *cfg, const char *root, const char *dir, const char *rel, int depth)
{
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d)
        return web_error(cfg, rel[0] ? rel : ".", strerror(errno));
    size_t root_len = strcmp(root, "/") ? strlen(root) : 0; /* "/": every path is inside */
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue; /* ".", "..", and hidden files (.git, .env) */
        char abs[PATH_MAX], name[PATH_MAX];
        if ((size_t)snprintf(abs, sizeof abs, "%s/%s", dir, de->d_name) >= sizeof abs ||
            (size_t)snprintf(name, sizeof name, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
                sizeof name) {
            rc = web_error(cfg, de->d_name, "path too long");
            break;
        }
        char *real = realpath(abs, NULL);
        if (!real) {
            CM_WARN("event=web_root_skip file=%s error=\"%s\"", name, strerror(errno));
            continue;
        }
        struct stat st;
        int inside = !strncmp(real, root, root_len) && real[root_len] == '/';
        if (!inside) {
            CM_WARN("event=web_root_skip file=%s reason=\"links outside the web root\"", name);
        } else if (stat(real, &st) != 0) {
            CM_WARN("event=web_root_skip file=%s error=\"%s\"", name, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            if (depth >= GW_STATIC_MAX_DEPTH)
                rc = web_error(cfg, name, "directories nested too deep (a link loop?)");
            else
                rc = walk(cfg, root, real, name, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            const char *why = NULL;
            /* a file must fit one connection's output queue, with room */
            size_t max = cfg->output_hard_limit / 2;
            gw_blob *b = NULL;
            if (web_files.n >= GW_STATIC_MAX_FILES)
                why = "more than 10000 files";
            else if (web_files.bytes + (size_t)st.st_size > GW_STATIC_MAX_BYTES)
                why = "more than 256 MiB in all";
            else if ((size_t)st.st_size > max)
                why = "larger than half of --output-hard-limit";
            else
                b = read_whole(real, max, &why);
            if (b)
                table_add(&web_files, name, gw__static_mime(name), "no-cache", b);
            else
                rc = web_error(cfg, name, why);
        }
        free(real);
    }
    closedir(d);
    return rc;
}

static int load_web_root(const gw_config *cfg)
{
    char *root = realpath(cfg->web_root, NULL);
    struct stat st;
    if (!root)
        return web_error(cfg, "", strerror(errno));
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(root);
        return web_error(cfg, "", "not a directory");
    }
    int rc = walk(cfg, root, root, "", 0);
    free(root);
    if (rc != 0)
        return rc;
    qsort(web_files.v, web_files.n, sizeof *web_files.v, cmp_file);
    web_root_on = 1;
    CM_INFO("event=web_root dir=%s files=%zu bytes=%zu", cfg->web_root, web_files.n,
            web_files.bytes);
    if (!table_find(&web_files, "index.html"))
        CM_WARN("event=web_root_no_index dir=%s msg=\"/ answers 404\"", cfg->web_root);
    return 0;
}

int gw__static_load(const gw_config *cfg, int socketio)
{
    if ((cfg->serve_client && socketio && load_client(cfg) != 0) ||
        (cfg->web_root[0] && load_web_root(cfg) != 0)) {
        gw__static_free();
        return -1;
    }
    return 0;
}

void gw__static_free(void)
{
    table_dispose(&client_files);
    table_dispose(&web_files);
    web_root_on = 0;
}

const gw_static_file *gw__static_client(pr_view name)
{
    char key[64];
    if (name.len == 0 || name.len >= sizeof key)
        return NULL;
    memcpy(key, name.ptr, name.len);
    key[name.len] = '\0';
    return table_find(&client_files, key);
}

int gw__static_web(pr_view path, const gw_static_file **f)
{
    char name[PATH_MAX];
    if (!web_root_on)
        return PR_ENOTFOUND;
    int n = gw__static_clean_path(path, name, sizeof name);
    if (n == PR_ETOOBIG)
        return PR_ENOTFOUND; /* longer than any name that was loaded */
    if (n < 0)
        return n;
    *f = table_find(&web_files, name);
    return *f ? 0 : PR_ENOTFOUND;
}

/* Unit tests of common/cm_settings.c: the engine on a table of its own. */
#include <stdlib.h>

#include "cm_settings.h"
#include "t.h"
#include "t_capture.h"

typedef struct {
    char name[8];
    char host[16];
    int port;
    unsigned count;
    size_t bytes;
    int flag;
    int mode;
    char level[8];
    char secret[16];
} cfg_t;

#define F(f) CM_SET_FIELD(cfg_t, f)
CM_SET_HOSTPORT_ASSERT(cfg_t, host, port);
static const cm_setting rows[] = {
    {"name", "T_NAME", CM_SET_STR, F(name), 0, 0, "abc", NULL, "a name"},
    {"listen", "T_LISTEN", CM_SET_HOSTPORT, F(host), 0, 0, "localhost:80", NULL, "where"},
    {"count", "T_COUNT", CM_SET_UINT, F(count), 1, 100, "7", NULL, "how many"},
    {"bytes", "T_BYTES", CM_SET_SIZE, F(bytes), 0, 1ull << 40, "1024", NULL, "how much"},
    {"flag", "T_FLAG", CM_SET_BOOL, F(flag), 0, 1, "false", NULL, "a switch"},
    {"mode", "T_MODE", CM_SET_ONOFF, F(mode), 0, 1, "on", NULL, "on or off"},
    {"level", "T_LEVEL", CM_SET_ENUM, F(level), 0, 0, "info", "debug|info|warn", "verbosity"},
    {"secret", "T_SECRET", CM_SET_SECRET, F(secret), 0, 0, "", NULL, "never printed"},
};
static const cm_settings table = {"t-prog", "usage: t-prog\n", rows, sizeof rows / sizeof rows[0]};

static const char *err; /* what the last load printed on stderr */

static int load(cfg_t *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    t_capture_begin(2);
    int rc = cm_settings_load(&table, c, argc, argv);
    err = t_capture_end();
    return rc;
}

int main(void)
{
    cfg_t c;
    char *none[] = {"x"};
    CHECK_EQ(load(&c, 1, none), 0);
    CHECK(!strcmp(c.name, "abc"));
    CHECK(!strcmp(c.host, "localhost"));
    CHECK_EQ(c.port, 80);
    CHECK_EQ(c.count, 7);
    CHECK_EQ(c.bytes, 1024);
    CHECK_EQ(c.flag, 0);
    CHECK_EQ(c.mode, 1);
    CHECK(!strcmp(c.level, "info"));

    /* the environment over defaults, the command line over both */
    setenv("T_COUNT", "9", 1);
    setenv("T_LISTEN", "[::1]:8080", 1);
    CHECK_EQ(load(&c, 1, none), 0);
    CHECK_EQ(c.count, 9);
    CHECK(!strcmp(c.host, "[::1]"));
    CHECK_EQ(c.port, 8080);
    char *flags[] = {"x",      "--count", "11",  "--bytes=2048",
                     "--flag", "--mode",  "off", "--level=debug",
                     "--name", ""};
    CHECK_EQ(load(&c, 10, flags), 0);
    CHECK_EQ(c.count, 11);
    CHECK_EQ(c.bytes, 2048);
    CHECK_EQ(c.flag, 1);
    CHECK_EQ(c.mode, 0);
    CHECK(!strcmp(c.level, "debug"));
    CHECK(!strcmp(c.name, ""));
    unsetenv("T_LISTEN");

    /* a bad environment value names the setting and the variable */
    setenv("T_COUNT", "lots", 1);
    CHECK_EQ(load(&c, 1, none), -1);
    CHECK(strstr(err, "t-prog: invalid value for --count (T_COUNT): 'lots'") != NULL);
    unsetenv("T_COUNT");

    /* each bad argument alone stops it, with an error naming the setting */
    struct {
        char *a, *b;
        const char *says;
    } bad[] = {
        {"--count", "0", "must be 1..100"},
        {"--count", "101", "must be 1..100"},
        {"--count", "-1", "--count"},
        {"--count", "+1", "--count"},
        {"--count", " 1", "--count"},
        {"--count", "1x", "--count"},
        {"--count", "", "--count"},
        {"--count", "99999999999999999999999", "--count"},
        {"--name", "toolongname", "too long"},
        {"--listen", "nohost", "HOST:PORT"},
        {"--listen", ":80", "HOST:PORT"},
        {"--listen", "h:65536", "port must be"},
        {"--listen", "h:x", "port must be"},
        {"--mode", "yes", "on or off"},
        {"--flag=maybe", NULL, "true or false"},
        {"--level", "loud", "one of debug|info|warn"},
        {"--nope", "1", "unknown option '--nope'"},
        {"--count", NULL, "--count needs a value"},
        {"stray", NULL, "unexpected argument 'stray'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[3] = {"x", bad[i].a, bad[i].b};
        CHECK_EQ(load(&c, bad[i].b ? 3 : 2, argv), -1);
        if (!strstr(err, bad[i].says))
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, err, bad[i].says);
        CHECK(strstr(err, bad[i].says) != NULL);
        CHECK(!strncmp(err, "t-prog: ", 8));
    }
    /* secrets are named, never shown; nor what follows '=' of an unknown flag */
    char *secret[] = {"x", "--secret", "hunter2hunter2hunter2"};
    CHECK_EQ(load(&c, 3, secret), -1);
    CHECK(strstr(err, "--secret") != NULL);
    CHECK(strstr(err, "hunter2") == NULL);
    char *unknown[] = {"x", "--passwd=hunter2"};
    CHECK_EQ(load(&c, 2, unknown), -1);
    CHECK(strstr(err, "hunter2") == NULL);

    /* --help: the usage on stdout, every row with its variable and bounds */
    char *help[] = {"x", "--count", "5", "-h"};
    memset(&c, 0, sizeof c);
    t_capture_begin(1);
    int rc = cm_settings_load(&table, &c, 4, help);
    const char *out = t_capture_end();
    CHECK_EQ(rc, 1);
    CHECK(!strncmp(out, "usage: t-prog\n", 14));
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK(strstr(out, rows[i].flag) != NULL);
        CHECK(strstr(out, rows[i].env) != NULL);
    }
    CHECK(strstr(out, "range 1..100") != NULL);
    CHECK(strstr(out, "one of debug|info|warn") != NULL);
    CHECK(strstr(out, "--flag ") != NULL && strstr(out, "--flag VALUE") == NULL);

    /* cm_parse_ull */
    unsigned long long v = 0;
    CHECK_EQ(cm_parse_ull("0", &v), 0);
    CHECK_EQ(v, 0);
    CHECK_EQ(cm_parse_ull("18446744073709551615", &v), 0);
    CHECK(v == 18446744073709551615ull);
    CHECK_EQ(cm_parse_ull("18446744073709551616", &v), -1);
    CHECK_EQ(cm_parse_ull("\t1", &v), -1);

    /* cm_settings_fail */
    t_capture_begin(2);
    CHECK_EQ(cm_settings_fail(&table, "bad --%s: %d", "x", 3), -1);
    out = t_capture_end();
    CHECK(!strcmp(out, "t-prog: bad --x: 3\n"));
    T_DONE();
}

/*
 * t_capture.h - captures what a test's code writes on stdout or stderr:
 * t_capture_begin(fd) sends fd (1 or 2) to a temporary file,
 * t_capture_end() puts it back and returns the text written meanwhile
 * (NUL-terminated, in a static buffer valid until the next capture).
 */
#ifndef T_CAPTURE_H
#define T_CAPTURE_H

#include <stdio.h>
#include <unistd.h>

static FILE *t_capture_file;
static int t_capture_fd = -1, t_capture_saved = -1;
static char t_capture_text[16384];

static void t_capture_begin(int fd)
{
    fflush(stdout);
    fflush(stderr);
    t_capture_file = tmpfile();
    t_capture_fd = fd;
    t_capture_saved = dup(fd);
    dup2(fileno(t_capture_file), fd);
}

static const char *t_capture_end(void)
{
    fflush(stdout);
    fflush(stderr);
    dup2(t_capture_saved, t_capture_fd);
    close(t_capture_saved);
    rewind(t_capture_file);
    size_t n = fread(t_capture_text, 1, sizeof t_capture_text - 1, t_capture_file);
    t_capture_text[n] = '\0';
    fclose(t_capture_file);
    return t_capture_text;
}

#endif

/* apps.c - the applications chat-gateway can run (--app). */
#include <string.h>

#include "app.h"

const gw_app *gw_app_find(const char *name)
{
    static const gw_app *const apps[] = {&gw_app_chat, &gw_app_engine_echo,
                                         &gw_app_socketio_echo};
    for (size_t i = 0; i < sizeof apps / sizeof apps[0]; i++)
        if (!strcmp(apps[i]->name, name))
            return apps[i];
    return NULL;
}

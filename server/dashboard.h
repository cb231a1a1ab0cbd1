/*
 * dashboard: the admin dashboard at GET /__admin/ui, a page and its assets
 * compiled into the binary (server/ui/, embedded at build time by
 * server/ui/embed.py), and the few admin routes only it needs: the event
 * stream (GET /__admin/events, which also takes the admin token as ?token=,
 * since a browser's EventSource cannot send headers), the fixtures the
 * accounts view lists (GET /__admin/fixtures) and the last scenario reload
 * (GET /__admin/reload). Everything else the page shows comes from the admin
 * API the tests use.
 */
#ifndef AUTHMOCK_DASHBOARD_H
#define AUTHMOCK_DASHBOARD_H

#include <stddef.h>

#include "router.h"

/* One embedded file (generated into ui_assets.c). */
struct dashboard_asset {
    const char *name; /* "index.html", "app.js"... */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};

extern const struct dashboard_asset dashboard_assets[];
extern const size_t dashboard_asset_count;

extern const struct route dashboard_routes[];
extern const size_t dashboard_route_count;

#endif

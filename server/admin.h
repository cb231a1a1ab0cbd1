/*
 * admin: the /__admin routes tests use to steer and inspect authmock: health,
 * reset (all or one namespace) and the mock clock. With --admin-token every
 * admin route needs "Authorization: Bearer <token>".
 */
#ifndef AUTHMOCK_ADMIN_H
#define AUTHMOCK_ADMIN_H

#include <stddef.h>

#include "router.h"

extern const struct route admin_routes[];
extern const size_t admin_route_count;

#endif

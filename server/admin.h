/*
 * admin: the /__admin routes tests use to steer and inspect authmock: health,
 * reset (all or one namespace) and the mock clock. With --admin-token every
 * admin route needs "Authorization: Bearer <token>".
 */
#ifndef AUTHMOCK_ADMIN_H
#define AUTHMOCK_ADMIN_H

#include <stddef.h>

#include "router.h"

struct app;
struct http_request;
struct http_response;

/* Answers 401 and returns -1 unless the admin token (when one is set) came in
 * "Authorization: Bearer <token>"; returns 0 when it did. */
int admin_authorize(struct app *app, const struct http_request *req, struct http_response *resp);

extern const struct route admin_routes[];
extern const size_t admin_route_count;

#endif

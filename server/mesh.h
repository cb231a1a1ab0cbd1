/*
 * mesh: the Mesh Integration API account-authentication endpoints
 * (/api/v1/...). It checks client credentials, validates requests the way
 * ASP.NET model binding does (ProblemDetails), turns a request into the facts
 * and identity the scenario engine works on, and renders the engine's reply
 * into the ApiResult envelope: tokens issued and stored on success, the HTTP
 * status derived from the envelope status, overrides and faults applied.
 */
#ifndef AUTHMOCK_MESH_H
#define AUTHMOCK_MESH_H

#include <stddef.h>

#include "fixtures.h"
#include "jsonutil.h"
#include "router.h"
#include "scenario.h"

extern const struct route mesh_routes[];
extern const size_t mesh_route_count;
extern const struct scenario_api mesh_scenario_api;

/* Checks the meaning of mesh fixtures (broker types, scheme types, clients). */
int mesh_check_fixtures(const struct fixtures *f, struct problems *p);
/* The canonical spelling of a broker type, matched ignoring case; NULL if unknown. */
const char *mesh_broker_type(const char *name);
/* HTTP status for an ApiResultStatus value; 0 if the value is unknown. */
int mesh_http_status(const char *api_status);

#endif

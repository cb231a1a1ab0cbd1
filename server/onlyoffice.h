/*
 * onlyoffice: the ONLYOFFICE DocSpace authentication endpoints
 * (/api/2.0/authentication...). It follows the server's decision logic step
 * by step (reference §6-§8): credential check, brute force through the
 * scenario engine, user status, SMS before TOTP, confirm keys and cookies,
 * real RFC 6238 codes and an SMS outbox. Profiles (--profile) change only the
 * defaults of SPEC §4.
 */
#ifndef AUTHMOCK_ONLYOFFICE_H
#define AUTHMOCK_ONLYOFFICE_H

#include <stddef.h>

#include "fixtures.h"
#include "jsonutil.h"
#include "router.h"
#include "scenario.h"

extern const struct route onlyoffice_routes[];
extern const size_t onlyoffice_route_count;
extern const struct scenario_api onlyoffice_scenario_api;

/* Checks the meaning of onlyoffice user fixtures (status, 2FA kind, secret). */
int onlyoffice_check_fixtures(const struct fixtures *f, struct problems *p);
/* "+1555***4567" for 15551234567: the first four and last four digits. */
void onlyoffice_phone_noise(const char *digits, char *out, size_t cap);
/* The admin route GET /__admin/onlyoffice/sms. */
void onlyoffice_sms_outbox(struct app *app, const char *ns, struct http_response *resp);
/* The admin route GET /__admin/onlyoffice/totp: the current RFC 6238 code of
 * the user's secret at the namespace's mock clock, and when it rolls over. */
void onlyoffice_totp(struct app *app, const char *ns, const char *user, struct http_response *resp);

#endif

#ifndef THREADED
#define THREADED /* the synchronous calls of the multi-threaded client */
#endif
#include "zkflow/zkauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_auth(int rc, const void *data) {
    (void)rc; /* a refused scheme ends the session: the watcher sees it */
    (void)data;
}

int zf_zkauth_add(zhandle_t *zh, const char *auth, char *err, size_t errlen) {
    if (!auth || !*auth)
        return 0;
    const char *colon = strchr(auth, ':');
    if (!colon || colon == auth || !colon[1]) {
        snprintf(err, errlen, "auth: expected SCHEME:CREDENTIALS");
        return -1;
    }
    char scheme[64];
    snprintf(scheme, sizeof scheme, "%.*s", (int)(colon - auth), auth);
    int rc = zoo_add_auth(zh, scheme, colon + 1, (int)strlen(colon + 1),
                          on_auth, NULL);
    if (rc != ZOK) {
        snprintf(err, errlen, "cannot add %s authentication: %s", scheme,
                 zerror(rc));
        return -1;
    }
    return 0;
}

struct ACL_vector *zf_zkauth_acl(const char *name) {
    static char auth[] = "auth", none[] = "", world[] = "world",
                anyone[] = "anyone";
    static struct ACL read_world[2];
    static struct ACL_vector read_only_world = {2, read_world};
    if (name && strcmp(name, "creator_all") == 0)
        return &ZOO_CREATOR_ALL_ACL;
    if (name && strcmp(name, "read_only_world") == 0) {
        /* The permission bits are variables in the client library, so
         * they are filled in here rather than by an initializer. */
        read_world[0] = (struct ACL){ZOO_PERM_ALL, {auth, none}};
        read_world[1] = (struct ACL){ZOO_PERM_READ, {world, anyone}};
        return &read_only_world;
    }
    return &ZOO_OPEN_ACL_UNSAFE;
}

int zf_zkauth_create_parents(zhandle_t *zh, struct ACL_vector *acl,
                             const char *path) {
    char *p = strdup(path);
    if (!p)
        return ZSYSTEMERROR;
    int rc = ZOK;
    for (char *s = strchr(p + 1, '/'); s && rc == ZOK; s = strchr(s + 1, '/')) {
        *s = '\0';
        rc = zoo_create(zh, p, NULL, -1, acl, 0, NULL, 0);
        if (rc == ZNODEEXISTS)
            rc = ZOK;
        *s = '/';
    }
    free(p);
    return rc;
}

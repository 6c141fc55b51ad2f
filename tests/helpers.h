/* Small helpers shared by the unit tests. */
#ifndef ZKFLOW_TEST_HELPERS_H
#define ZKFLOW_TEST_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write `text` to a new file named `name` inside a fresh temporary directory
 * (one per test process) and return its path in a static buffer. */
static inline const char *write_temp(const char *name, const char *text) {
    static char dir[64];
    static char path[256];
    if (!dir[0]) {
        strcpy(dir, "/tmp/zkflow-test-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        abort();
    fputs(text, fp);
    fclose(fp);
    return path;
}

#endif

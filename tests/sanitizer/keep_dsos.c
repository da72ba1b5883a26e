/* keep_dsos.c: linked into the test programs and the CLI of sanitizer
 * builds only (never into the library).
 *
 * The Vulkan loader dlclose()s the driver (lavapipe, say) when the instance
 * is destroyed. A leak inside the driver is then reported by LeakSanitizer
 * at exit as "<unknown module>", and a suppression by the driver's library
 * name (tests/lsan.supp) cannot match it. Pinning every library before it is
 * closed (RTLD_NOLOAD | RTLD_NODELETE keeps it mapped) lets the leak report
 * name its library. edgelm's own leaks are unaffected: they are reported
 * with edgelm's frames, which no suppression names (test_lsan checks it). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>

int dlclose(void *handle) {
    static int (*real_dlclose)(void *);
    if (!real_dlclose) real_dlclose = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
    struct link_map *lm = NULL;
    if (handle && dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
        (void)dlopen(lm->l_name, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    return real_dlclose ? real_dlclose(handle) : 0;
}

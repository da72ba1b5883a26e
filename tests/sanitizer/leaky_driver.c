/* leaky_driver.c: a stand-in for a third-party driver that leaks, built as
 * libelm_leaky_driver.so in sanitizer builds only. leak_canary dlopen()s it,
 * calls leaky_driver_init() and dlclose()s it, as the Vulkan loader does
 * with a real driver, so test_lsan can show on any machine how such a leak
 * is attributed (see keep_dsos.c). */
#include <stdlib.h>
#include <string.h>

static void *volatile last;

__attribute__((visibility("default"), noinline)) int leaky_driver_init(void) {
    char *p = malloc(128);
    if (!p) return 1;
    memset(p, 0x5a, 128);
    last = p;
    last = NULL; /* nothing points at it any more: a leak */
    return 0;
}

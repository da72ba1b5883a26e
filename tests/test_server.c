/*
 * test_server.c: `edgelm serve` (tools/serve_*.c), driven from the outside
 * over loopback by tests/server/serve_client.py (Python's http.client, and
 * curl where it is installed). Each test is one scenario; the script starts
 * its own server with --port 0 and a bounded life, stops it with SIGTERM and
 * checks that it exits 0 in time. The model is the shared stories260K, which
 * has no chat template (so the ChatML fallback is exercised).
 *
 *   endpoints    every endpoint, streaming included; greedy output equals
 *                `edgelm run`'s; logprobs spell the text and their mean is the
 *                confidence summary's; stop strings; prefix reuse; metrics;
 *                the same through curl; prompts are not logged
 *   concurrent   8 clients on --parallel 4 all answered, each as it would be
 *                alone
 *   sigterm      SIGTERM under that load exits 0 within the drain bound
 *   queue        a full queue answers 503 with Retry-After
 *   disconnect   a client that goes away (streaming or not) cancels its
 *                generation, and the slot serves the next request
 *   hostile      each hostile request gets a 4xx with an OpenAI error object,
 *                and the next good request succeeds
 *   auth         a non-loopback host needs --api-key; Bearer checks
 *   log_prompts  --log-prompts writes prompts to stderr
 *   escalate     --escalate-url with a second local server as the upstream:
 *                low confidence and a prompt too long forward, high
 *                confidence does not, a dead upstream falls back (marked)
 *   hotswap      --models DIR --trusted-key: while clients send requests, a
 *                newer signed model goes live without a failed request (each
 *                answer equals `edgelm run` on the model it names); newer
 *                files with a changed byte, another key's signature or NaN
 *                weights (the self-test) are rejected once and B stays live;
 *                one client streams (a stream names one model)
 *   hotswap_start  the newest good file wins at startup (a newer tampered one
 *                is rejected); no good file or no --trusted-key fails
 *                clearly; SIGHUP rescans at once
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/paths.h"

static void scenario(const char *name) {
    const char *cli = test_cli();
    if (!cli) cr_skip_test("ELM_CLI is not set: run this test through ctest");
    if (access("/usr/bin/python3", X_OK) != 0) cr_skip_test("python3 is not installed");
    char model[4096], script[4096];
    if (!test_shared_path("models/stories260K.gguf", model, sizeof model))
        cr_skip_test("%s not found (set ELM_SHARED_DIR to the shared directory)", model);
    snprintf(script, sizeof script, "%s/tests/server/serve_client.py", test_source_dir());
    const char *argv[] = {"/usr/bin/python3", script, name, cli, model, NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, NULL, 0, &out, &err);
    cr_expect_eq(rc, 0, "scenario %s failed (exit %d):\n%s", name, rc, err ? err : "");
    if (rc == 0 && err) fprintf(stderr, "%s", err);
    free(out);
    free(err);
}

Test(server, endpoints) { scenario("endpoints"); }
Test(server, concurrent) { scenario("concurrent"); }
Test(server, sigterm) { scenario("sigterm"); }
Test(server, queue) { scenario("queue"); }
Test(server, hostile) { scenario("hostile"); }
Test(server, auth) { scenario("auth"); }
Test(server, log_prompts) { scenario("log_prompts"); }
Test(server, escalate) { scenario("escalate"); }
Test(server, disconnect) { scenario("disconnect"); }
Test(server, hotswap) { scenario("hotswap"); }
Test(server, hotswap_start) { scenario("hotswap_start"); }

/* hallu train --config: the JSON object reader of src/cli/config_file.c (CLI
 * code, not in libhallu: its two sources are compiled into this test), with
 * the inputs its fuzz target (tests/fuzz/fuzz_config.c) found or probed. */
#include "check.h"

#include <unistd.h>

#include "cli/args.c"
#include "cli/config_file.c"

static const char *s_method, *s_data;
static int i_epochs, b_hal = 1, b_resume;
static double f_lr;
static const cli_arg args[] = {
    { "method", CLI_ARG_STR, &s_method, "" },
    { "data", CLI_ARG_STR, &s_data, "" },
    { "epochs", CLI_ARG_INT, &i_epochs, "" },
    { "lr", CLI_ARG_FLOAT, &f_lr, "" },
    { "hallucinator", CLI_ARG_BOOL, &b_hal, "" },
    { "no-hallucinator", CLI_ARG_CLEAR, &b_hal, "" },
    { "resume", CLI_ARG_BOOL, &b_resume, "" },
};
enum { NARGS = (int)(sizeof args / sizeof args[0]) };
static const char *const ignored[] = { "image-size", NULL };

/* Parses text[0..len) and compares the tokens, joined by spaces, with want
 * (NULL: the parse must fail with a message naming the file and `needle`). */
static void expect(const char *text, size_t len, const char *want, const char *needle)
{
    cli_config_argv c;
    char msg[700] = "", joined[1024] = "";
    int rc = cli_config_parse(text, len, "t.json", args, NARGS, ignored, &c, msg, sizeof msg);
    if (!want) {
        CHECK_MSG(rc == -1 && c.argc == 0 && !c.argv, "accepted: %.*s", (int)len, text);
        CHECK_MSG(strstr(msg, "--config t.json: ") == msg && strstr(msg, needle), "message: %s", msg);
        return;
    }
    CHECK_MSG(rc == 0, "rejected: %s", msg);
    for (int i = 0; rc == 0 && i < c.argc; i++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? " " : "", c.argv[i]);
    CHECK_MSG(strcmp(joined, want) == 0, "tokens '%s', want '%s'", joined, want);
    cli_config_free(&c);
}

#define EXPECT(lit, want, needle) expect(lit, sizeof(lit) - 1, want, needle)

static void test_values(void)
{
    /* config.json as hallu train writes it: 0/1 booleans, the recorded image size ignored. */
    EXPECT("{\"method\": \"simclr\", \"hallucinator\": 0, \"data\": \"synth\\u0065tic:40\", \"epochs\": 2, "
           "\"lr\": 0.02, \"resume\": 1, \"image_size\": [32, 32]}\n",
           "--method simclr --no-hallucinator --data synthetic:40 --epochs 2 --lr 0.02 --resume", NULL);
    EXPECT("{\"hallucinator\": true, \"resume\": false, \"no_hallucinator\": null}", "--hallucinator", NULL);
    EXPECT("{\"resume\": 1e0, \"hallucinator\": -0.0}", "--resume --no-hallucinator", NULL);
    EXPECT("{\"epochs\": \"two\"}", NULL, "epochs");
    EXPECT("{\"lr\": [1, 2]}", NULL, "lr");
    EXPECT("{\"bogus\": 1}", NULL, "bogus");
    EXPECT("{\"method\": \"simclr\",", NULL, "byte 20");
    /* A boolean flag takes true/false/null or a number only (yes/"true" were read as false). */
    EXPECT("{\"resume\": yes}", NULL, "resume");
    EXPECT("{\"resume\": \"true\"}", NULL, "resume");
    EXPECT("{\"resume\": 1x}", NULL, "resume");
}

static void test_bytes(void)
{
    /* A NUL byte ended the scalar's copy but not the parse: "2\0junk" was 2. */
    EXPECT("{\"epochs\": 2\0}", NULL, "expected ',' or '}'");
    /* Raw control characters in a string (a NUL cut the key or value short). */
    EXPECT("{\"epochs\0junk\": 2}", NULL, "control character");
    EXPECT("{\"data\": \"a\nb\"}", NULL, "control character");
    EXPECT("{\"data\": \"a\\nb\", \"epochs\": 3}", "--data a\nb --epochs 3", NULL);
    /* Brackets inside an array's strings do not end the array. */
    EXPECT("{\"image_size\": [\"]\", \"\\\"]\", [3]], \"epochs\": 2}", "--epochs 2", NULL);
    EXPECT("{\"image_size\": [\"]\"", NULL, "unterminated array");
    /* The buffer is not NUL-terminated: nothing past len is read. */
    char text[] = "{\"epochs\": 12}";
    expect(text, sizeof text - 3, NULL, "byte");
    expect(text, sizeof text - 1, "--epochs 12", NULL);
}

/* Found by the fuzz target: an empty object left argv NULL and the merge
 * passed it to memcpy (undefined even for 0 bytes; UBSan aborts). */
static void test_empty_merge(void)
{
    cli_config_argv c;
    char msg[700];
    CHECK(cli_config_parse(" { } ", 5, "t.json", args, NARGS, ignored, &c, msg, sizeof msg) == 0 && c.argc == 0);
    char *argv1[] = { "train", NULL }, *argv3[] = { "train", "--epochs", "4", NULL };
    int n = 0;
    char **m = cli_config_merge(&c, 1, argv1, &n);
    CHECK(m && n == 1 && strcmp(m[0], "train") == 0 && !m[1]);
    free(m);
    m = cli_config_merge(&c, 3, argv3, &n);
    CHECK(m && n == 3 && strcmp(m[2], "4") == 0 && !m[3]);
    free(m);
    cli_config_free(&c);
}

static void test_file(void)
{
    char path[] = "/tmp/hallu_test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    const char text[] = "{\"method\": \"mocov2\", \"epochs\": 3}\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    cli_config_argv c;
    char msg[700];
    CHECK(cli_config_load(path, args, NARGS, ignored, &c, msg, sizeof msg) == 0 && c.argc == 4);
    char *argv[] = { "train", "--epochs", "5", NULL };
    int n = 0;
    char **m = cli_config_merge(&c, 3, argv, &n);
    i_epochs = 0;
    CHECK(m && cli_parse("", "", args, NARGS, n, m, NULL, 0, NULL) == CLI_PARSE_OK);
    CHECK(i_epochs == 5 && s_method && strcmp(s_method, "mocov2") == 0);   /* the command line wins */
    free(m);
    cli_config_free(&c);
    unlink(path);
    CHECK(cli_config_load(path, args, NARGS, ignored, &c, msg, sizeof msg) == -1 && strstr(msg, path));
}

int main(void)
{
    test_values();
    test_bytes();
    test_empty_merge();
    test_file();
    return check_summary();
}

/* JSONL/CSV appenders and the JSON object builder. */
#include "hallu/io.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[512];

static int file_is(const char *path, const char *want)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (strcmp(buf, want) != 0)
        fprintf(stderr, "    file %s is:\n%s\n", path, buf);
    return strcmp(buf, want) == 0;
}

static void test_json_obj(void)
{
    hallu_json_obj o;
    hallu_error err = {0};
    hallu_json_obj_init(&o);
    const char *s = hallu_json_obj_finish(&o, &err);
    CHECK(s && strcmp(s, "{}") == 0);
    hallu_json_obj_init(&o);
    hallu_json_obj_add_int(&o, "epoch", 3);
    hallu_json_obj_add_num(&o, "loss", 0.25);
    hallu_json_obj_add_str(&o, "method", "sim\"clr\n");
    s = hallu_json_obj_finish(&o, &err);
    CHECK(s && strcmp(s, "{\"epoch\":3,\"loss\":0.25,\"method\":\"sim\\\"clr\\n\"}") == 0);
    hallu_json_obj_init(&o);
    hallu_json_obj_add_num(&o, "loss", NAN);
    CHECK(hallu_json_obj_finish(&o, &err) == NULL && err.code == HALLU_ERR_INVALID_ARG);
    hallu_json_obj_init(&o);
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 5; i++)
        hallu_json_obj_add_str(&o, "k", big);
    CHECK(hallu_json_obj_finish(&o, &err) == NULL && err.code == HALLU_ERR_OOM);
    char esc[8];
    CHECK(hallu_json_escape(esc, sizeof esc, "a\x01") == 9);   /* "a\u0001" */
    CHECK(strlen(esc) == 7);                                      /* truncated, still terminated */
}

static void test_appenders(void)
{
    char path[600];
    hallu_error err = {0};
    snprintf(path, sizeof path, "%s/m.jsonl", dir);
    CHECK_OK(hallu_jsonl_append(path, "{\"a\":1}", &err), &err);
    CHECK_OK(hallu_jsonl_append(path, "{\"a\":2}", &err), &err);
    CHECK(file_is(path, "{\"a\":1}\n{\"a\":2}\n"));
    CHECK(hallu_jsonl_append(path, "x\ny", &err) == HALLU_ERR_INVALID_ARG);
    snprintf(path, sizeof path, "%s/m.csv", dir);
    double row[3] = {1, 0.5, -2.75};
    CHECK_OK(hallu_csv_append(path, "epoch,loss,acc", row, 3, &err), &err);
    row[0] = 2;
    CHECK_OK(hallu_csv_append(path, "epoch,loss,acc", row, 3, &err), &err);
    CHECK(file_is(path, "epoch,loss,acc\n1,0.5,-2.75\n2,0.5,-2.75\n"));
    snprintf(path, sizeof path, "%s/missing/m.csv", dir);
    CHECK(hallu_csv_append(path, "a", row, 1, &err) == HALLU_ERR_IO && strstr(err.msg, path));
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/test_metrics_XXXXXX", HALLU_BINARY_DIR);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_json_obj();
    test_appenders();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_summary();
}

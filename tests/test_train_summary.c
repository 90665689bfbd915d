/* hallu_train_gain_summary: the closing line of `hallu train` against the
 * untrained kNN floor (exact text: tests/train_messages_check.py and the
 * main job read it). */
#include "hallu/train.h"
#include "check.h"

#include <string.h>

static int summary(double floor, double top1, int collapsed, char *out, size_t n)
{
    hallu_train_config cfg;
    hallu_train_config_default(&cfg);
    cfg.lr = 0.02;
    hallu_train_result res = { .knn_top1 = top1, .knn_top5 = 90, .knn_floor_top1 = floor, .steps = 8,
                               .collapsed = collapsed };
    return hallu_train_gain_summary(&cfg, &res, out, n);
}

int main(void)
{
    char out[600];
    CHECK(summary(26.0, 38.0, 0, out, sizeof out) == 0);
    CHECK_MSG(strcmp(out, "kNN top-1 38.00% (+12.00 over the untrained 26.00%)") == 0, "gain: %s", out);
    CHECK(summary(41.0, 38.0, 0, out, sizeof out) == 1);
    CHECK_MSG(strcmp(out, "warning: training made the kNN accuracy worse: 38.00% after training vs 41.00% "
                          "untrained (-3.00 points).\n  Short runs often do this; try more --epochs or steps "
                          "(8 steps ran), or another --lr (now 0.02).") == 0, "worse: %s", out);
    CHECK(summary(41.0, 38.0, 1, out, sizeof out) == 1);
    CHECK_MSG(strstr(out, "the embeddings also collapsed") != NULL, "collapsed: %s", out);
    /* level as printed (38.001 vs 38.004) is not "worse", and never "+-0.00" */
    CHECK(summary(38.004, 38.001, 0, out, sizeof out) == 0);
    CHECK_MSG(strcmp(out, "kNN top-1 38.00% (+0.00 over the untrained 38.00%)") == 0, "level: %s", out);
    /* 15.625 prints as 15.62 (round half to even): compared as printed, it is level with 15.62 */
    CHECK(summary(15.625, 15.62, 0, out, sizeof out) == 0);
    CHECK_MSG(strcmp(out, "kNN top-1 15.62% (+0.00 over the untrained 15.62%)") == 0, "printed: %s", out);
    /* no floor (--no-knn-floor) or no final kNN (--epochs 0): nothing */
    CHECK(summary(-1, 38.0, 0, out, sizeof out) == -1 && out[0] == '\0');
    CHECK(summary(41.0, -1, 0, out, sizeof out) == -1 && out[0] == '\0');
    return check_summary();
}

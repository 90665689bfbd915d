/* --init FILE: the encoder starts from torchvision-named weights (a `hallu
 * export`, with or without --heads, or a torchvision ResNet state dict), which
 * file the run records so that a --resume never needs the flag again. */
#include "train_internal.h"
#include "hallu/io.h"
#include "hallu/params.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensors of such files that are not the backbone's: torchvision's classifier
 * and the heads `hallu export --heads` adds. The heads keep their fresh init. */
static const char *const IGNORED[] = { "fc.", "projector.", "predictor.", "hallucinator.", NULL };

/* The file's absolute path (symbolic links resolved) into out. */
static hallu_status absolute_path(const char *path, char out[TRAIN_RUN_PATH_CAP], hallu_error *err)
{
    char *abs = realpath(path, NULL);
    if (!abs)
        return hallu_error_set(err, HALLU_ERR_IO, "--init %s: %s; expected a .safetensors file of backbone weights",
                               path, strerror(errno));
    size_t n = strlen(abs);
    if (n >= TRAIN_RUN_PATH_CAP) {
        free(abs);
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--init %.60s...: the absolute path has %zu characters, "
                               "at most %d can be recorded", path, n, TRAIN_RUN_PATH_CAP - 1);
    }
    memcpy(out, abs, n + 1);
    free(abs);
    return HALLU_OK;
}

/* The "init" string that train_write_config recorded in config.json (written
 * with hallu_json_escape), into out; "" when the file has none. */
static void recorded_init(const char *config_path, char out[TRAIN_RUN_PATH_CAP])
{
    out[0] = '\0';
    FILE *f = fopen(config_path, "rb");
    if (!f)
        return;
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    const char *p = strstr(text, "\"init\": \"");
    if (!p)
        return;
    p += 9;
    size_t n = 0;
    for (; *p && *p != '"' && n + 1 < TRAIN_RUN_PATH_CAP; p++) {
        char c = *p;
        if (c == '\\') {
            c = *++p;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'r') c = '\r';
            else if (c == 'u' && strlen(p) >= 5) {
                char hex[5] = { p[1], p[2], p[3], p[4], '\0' };
                c = (char)strtol(hex, NULL, 16);
                p += 4;
            } else if (c == '\0') {
                break;
            }
        }
        out[n++] = c;
    }
    out[*p == '"' ? n : 0] = '\0';   /* a cut or unterminated string records nothing */
}

hallu_status train_resolve_init(train_run *run, hallu_error *err)
{
    const char *given = run->cfg->init && run->cfg->init[0] ? run->cfg->init : NULL;
    run->init_path[0] = '\0';
    if (run->resuming) {
        /* The checkpoint holds the weights; train_load_checkpoint checks that a
         * given --init names the file the run recorded. A file since deleted
         * compares by the name given. */
        if (given && absolute_path(given, run->init_path, err) != HALLU_OK)
            snprintf(run->init_path, sizeof run->init_path, "%s", given);
        hallu_error_clear(err);
        return HALLU_OK;
    }
    if (given)
        return absolute_path(given, run->init_path, err);
    if (run->cfg->resume)   /* starting again from step 0: the earlier attempt's --init */
        recorded_init(run->path_config, run->init_path);
    return HALLU_OK;
}

hallu_status train_load_init(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    const char *shown = c->init && c->init[0] ? c->init : run->init_path;
    char what[TRAIN_RUN_PATH_CAP + 16], target[128];
    snprintf(what, sizeof what, "--init %s", shown);
    snprintf(target, sizeof target, "--arch %s --stem %s", c->arch, c->stem);
    hallu_safetensors st;
    memset(&st, 0, sizeof st);
    hallu_status s = hallu_safetensors_open(&st, run->init_path, err);
    if (s != HALLU_OK) {
        hallu_safetensors_close(&st);
        return hallu_error_prefix(err, s, "%s", what);
    }
    hallu_params_fit fit = { .select = "encoder.", .add = "", .ignore = IGNORED, .allow_extra = 0,
                             .what = what, .target = target };
    s = hallu_params_load_fit(&run->ps, &st, &fit, err);
    hallu_safetensors_close(&st);
    if (s != HALLU_OK)
        return s;
    /* MoCo: the key encoder starts as a copy of the loaded query encoder, its BN
     * running statistics included (only parameters follow by momentum later). */
    hallu_ssl_sync_key(run->ssl, &run->ps);
    return HALLU_OK;
}

hallu_status train_check_resumed_init(train_run *run, const char *recorded, hallu_error *err)
{
    const char *given = run->cfg->init && run->cfg->init[0] ? run->init_path : NULL;
    if (given && strcmp(given, recorded ? recorded : "") != 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--init %s: the run in %s started %s%s; --resume "
                               "continues from its checkpoint and does not read --init (leave it out)",
                               run->cfg->init, run->cfg->out, recorded ? "from --init " : "without --init",
                               recorded ? recorded : "");
    snprintf(run->init_path, sizeof run->init_path, "%s", recorded ? recorded : "");
    return HALLU_OK;
}

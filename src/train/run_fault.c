/* The trainer's side of the backend fault hook (tests only): where in a run an
 * op or an allocation fails, so a test can show that each failure becomes a
 * named error, exits non-zero and keeps the previous checkpoint. */
#include "train_internal.h"

#include <stdlib.h>
#include <string.h>

hallu_status train_fault_parse(train_run *run, hallu_error *err)
{
    const char *spec = run->cfg->test_fault;
    run->fault_kind = TRAIN_FAULT_NONE;
    if (!spec || !spec[0])
        return HALLU_OK;
    static const struct { const char *name; train_fault_kind kind; } kinds[] = {
        { "forward", TRAIN_FAULT_FORWARD }, { "optimizer", TRAIN_FAULT_OPTIMIZER },
        { "checkpoint", TRAIN_FAULT_CHECKPOINT }, { "alloc", TRAIN_FAULT_ALLOC },
    };
    const char *colon = strchr(spec, ':');
    char *end = NULL;
    long long at = colon ? strtoll(colon + 1, &end, 10) : 0;
    for (size_t i = 0; colon && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strlen(kinds[i].name) == (size_t)(colon - spec) && strncmp(spec, kinds[i].name, (size_t)(colon - spec)) == 0)
            run->fault_kind = kinds[i].kind;
    if (run->fault_kind == TRAIN_FAULT_NONE || !end || *end || at < 1)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "test fault '%s': expected forward:STEP, optimizer:STEP, "
                               "checkpoint:EPOCH or alloc:N (counted from 1)", spec);
    run->fault_at = at;
    return HALLU_OK;
}

hallu_status train_fault_setup(train_run *run, hallu_error *err)
{
    if (run->fault_kind == TRAIN_FAULT_NONE)
        return HALLU_OK;
    /* Also the check that the device has the hook at all (cpu-isolated). */
    return hallu_backend_inject_fault(run->be, 0, run->fault_kind == TRAIN_FAULT_ALLOC ? run->fault_at : 0, err);
}

void train_fault_arm(train_run *run, train_fault_kind kind, int64_t at)
{
    if (run->fault_kind == kind && run->fault_at == at)
        hallu_backend_inject_fault(run->be, 1, 0, NULL);   /* armed at creation: the backend has the hook */
}

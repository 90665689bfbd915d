/* Minimal test harness: CHECK* record failures and keep going; main returns
 * check_summary(), which prints "N passed, N failed" and is non-zero on failure. */
#ifndef HALLU_TEST_CHECK_H
#define HALLU_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_passed_count, check_failed_count;

#define CHECK(cond) check_report((cond), #cond, __FILE__, __LINE__)
#define CHECK_MSG(cond, ...) do { if (!check_report((cond), #cond, __FILE__, __LINE__)) { \
    fprintf(stderr, "    "); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } while (0)
#define CHECK_OK(status_expr, errp) do { hallu_status check_s_ = (status_expr); \
    if (!check_report(check_s_ == HALLU_OK, #status_expr, __FILE__, __LINE__)) \
        fprintf(stderr, "    status %d: %s\n", (int)check_s_, (errp)->msg); } while (0)
#define CHECK_NEAR(a, b, tol) do { double check_a_ = (a), check_b_ = (b); \
    if (!check_report(fabs(check_a_ - check_b_) <= (tol), #a " ~= " #b, __FILE__, __LINE__)) \
        fprintf(stderr, "    %.9g vs %.9g (tol %.3g)\n", check_a_, check_b_, (double)(tol)); } while (0)

static inline int check_report(int ok, const char *expr, const char *file, int line)
{
    if (ok) {
        check_passed_count++;
    } else {
        check_failed_count++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, expr);
    }
    return ok;
}

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed_count, check_failed_count);
    return check_failed_count == 0 && check_passed_count > 0 ? 0 : 1;
}

#endif

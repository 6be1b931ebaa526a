/* SPDX-License-Identifier: MIT */
/*
 * Parsing the benchmarks' option values (see args.h).
 */
#include "args.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

bool arg_size(const char *s, size_t *pages)
{
	char *end;
	double v = strtod(s, &end);
	double mult = 1;
	if (*end && strchr("kK", *end))
		mult = 1024;
	else if (*end && strchr("mM", *end))
		mult = 1024.0 * 1024;
	else if (*end && strchr("gG", *end))
		mult = 1024.0 * 1024 * 1024;
	if (mult > 1) {
		end++;
		if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
			end += strlen(end);
	}
	if (*end || end == s || v <= 0)
		return false;
	*pages = (size_t)(v * mult / (double)WL_PAGE);
	return *pages > 0;
}

bool arg_share(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s)
		return false;
	if (*end == '%') {
		v /= 100;
		end++;
	}
	if (*end || v < 0 || v > 1)
		return false;
	*out = v;
	return true;
}

bool arg_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

bool arg_paces(const char *s, bool run[2])
{
	run[0] = run[1] = false;
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "throttled") == 0)
			run[0] = true;
		else if (strcmp(t, "unthrottled") == 0)
			run[1] = true;
		else
			return false;
	}
	return run[0] || run[1];
}

bool arg_shares_finish(double *share, bool unique_given, const char *prog)
{
	double others = share[WL_DUP] + share[WL_ZERO] + share[WL_VOLATILE];
	if (!unique_given)
		share[WL_UNIQUE] = others <= 1 ? 1 - others : 0;
	double sum = others + share[WL_UNIQUE];
	if (fabs(sum - 1) > 1e-6) {
		fprintf(stderr, "%s: the shares add up to %.4f, not 1\n", prog, sum);
		return false;
	}
	return true;
}

/* SPDX-License-Identifier: MIT */
/* Library identity and error words. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SP_STR2(x) #x
#define SP_STR(x) SP_STR2(x)

const char *sp_version(void)
{
	return SP_STR(SAMEPAGE_VERSION_MAJOR) "." SP_STR(SAMEPAGE_VERSION_MINOR) "." SP_STR(
		SAMEPAGE_VERSION_PATCH);
}

static __thread char last_error[256];

const char *sp_last_error(void)
{
	return last_error;
}

void _sp_set_last_error(const char *msg)
{
	snprintf(last_error, sizeof(last_error), "%s", msg ? msg : "");
}

const char *sp_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ENODEV:
		return "KSM is not available in this kernel";
	case -ENOENT:
		return "not present";
	case -EBUSY:
		return "busy: pages are merged";
	case -EACCES:
		return "permission denied";
	default:
		/* strerror() of glibc returns a static string for known errnos. */
		return strerror(err < 0 ? -err : err);
	}
}

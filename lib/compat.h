/* SPDX-License-Identifier: MIT */
/*
 * Kernel interfaces newer than the build machine's headers (Debian 12 ships
 * 6.1 headers). Values are the kernel's uapi ones; support is always
 * detected at run time, never assumed from these definitions.
 */
#ifndef SP_COMPAT_H
#define SP_COMPAT_H

#include <sys/prctl.h>

/* include/uapi/linux/prctl.h, Linux 6.4 */
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

#endif

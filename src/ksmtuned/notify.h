/* SPDX-License-Identifier: MIT */
/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
#ifndef KSMTUNED_NOTIFY_H
#define KSMTUNED_NOTIFY_H

/* Send "READY=1", "STATUS=...", ... (newline-separated assignments).
 * Returns 1 when sent, 0 when NOTIFY_SOCKET is unset, a negative errno on
 * failure (never fatal: systemd may not be listening). */
int sd_notify_send(const char *state);

#endif

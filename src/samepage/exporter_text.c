/* SPDX-License-Identifier: MIT */
/* Prometheus text format: escaping, numbers, one family at a time. */
#include "exporter_text.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(struct prom *p, size_t more)
{
	if (p->oom)
		return false;
	if (p->len + more + 1 <= p->cap)
		return true;
	size_t cap = p->cap ? p->cap : 16384;
	while (cap < p->len + more + 1)
		cap *= 2;
	char *b = realloc(p->buf, cap);
	if (!b) {
		p->oom = true;
		return false;
	}
	p->buf = b;
	p->cap = cap;
	return true;
}

static void put(struct prom *p, const char *s, size_t n)
{
	if (!reserve(p, n))
		return;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = 0;
}

static void puts_(struct prom *p, const char *s)
{
	put(p, s, strlen(s));
}

static void putf(struct prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct prom *p, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(p, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid:
 * Prometheus rejects a whole scrape for one bad byte in a label value, and
 * process names are whatever bytes a program chose. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	size_t len;
	uint32_t cp, min;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Escapes for HELP (backslash, newline) and label values (also '"');
 * invalid UTF-8 becomes U+FFFD. */
static void put_escaped(struct prom *p, const char *text, bool quote)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t n = strlen(text);
	for (size_t i = 0; i < n;) {
		if (s[i] == '\\') {
			puts_(p, "\\\\");
		} else if (s[i] == '\n') {
			puts_(p, "\\n");
		} else if (s[i] == '"' && quote) {
			puts_(p, "\\\"");
		} else {
			size_t k = utf8_len(s + i, n - i);
			if (k == 0) {
				puts_(p, "\xef\xbf\xbd");
				i++;
				continue;
			}
			put(p, (const char *)s + i, k);
			i += k;
			continue;
		}
		i++;
	}
}

void prom_family(struct prom *p, const char *name, enum prom_type type, const char *help)
{
	snprintf(p->family, sizeof(p->family), "%s", name);
	putf(p, "# HELP %s ", name);
	put_escaped(p, help, false);
	putf(p, "\n# TYPE %s %s\n", name, type == PROM_COUNTER ? "counter" : "gauge");
}

static void sample_start(struct prom *p, const char *const *labels)
{
	puts_(p, p->family);
	if (!labels || !labels[0])
		return;
	puts_(p, "{");
	for (size_t i = 0; labels[i] && labels[i + 1]; i += 2) {
		putf(p, "%s%s=\"", i ? "," : "", labels[i]);
		put_escaped(p, labels[i + 1], true);
		puts_(p, "\"");
	}
	puts_(p, "}");
}

void prom_int(struct prom *p, const char *const *labels, int64_t v)
{
	sample_start(p, labels);
	putf(p, " %" PRId64 "\n", v);
}

void prom_double(struct prom *p, const char *const *labels, double v)
{
	sample_start(p, labels);
	if (isnan(v)) {
		puts_(p, " NaN\n");
		return;
	}
	if (isinf(v)) {
		puts_(p, v > 0 ? " +Inf\n" : " -Inf\n");
		return;
	}
	/* the shortest text that reads back as the same double */
	char text[40];
	snprintf(text, sizeof(text), "%.15g", v);
	if (strtod(text, NULL) != v)
		snprintf(text, sizeof(text), "%.17g", v);
	putf(p, " %s\n", text);
}

void prom_milli(struct prom *p, const char *const *labels, int64_t v)
{
	sample_start(p, labels);
	uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	putf(p, " %s%" PRIu64 ".%03" PRIu64 "\n", v < 0 ? "-" : "", a / 1000, a % 1000);
}

char *prom_take(struct prom *p, size_t *len)
{
	if (!reserve(p, 0)) {
		prom_free(p);
		return NULL;
	}
	char *b = p->buf;
	*len = p->len;
	memset(p, 0, sizeof(*p));
	return b;
}

void prom_free(struct prom *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

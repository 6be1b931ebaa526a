/* SPDX-License-Identifier: MIT */
/*
 * /etc/ksmtuned.conf. The original ksmtuned sourced it with bash, so the
 * file is shell: VAR=value assignments, comments, single and double quotes,
 * backslashes, several assignments on a line, ';'. We read that subset
 * without running a shell. Anything a shell would do differently (run a
 * command, expand $VAR) is reported with its line and ignored, so a file
 * never means something other than what it looks like.
 */
#include "tune.h"

#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const policy_words[] = { "classic", "adaptive", NULL };
static const char *const metric_words[] = { "rsz", "pss", "vsz", NULL };
static const char *const advisor_words[] = { "auto", "yes", "no", NULL };
static const char *const engine_words[] = { "kernel", "user", NULL };

#define U32 4294967295LL

const struct tune_var tune_vars[TV_COUNT] = {
	[TV_MONITOR_INTERVAL] = { "KSM_MONITOR_INTERVAL", TVK_INT, 1, 86400, 60, NULL, NULL, "s", "classic",
				  "seconds between two adjustments" },
	[TV_NPAGES_BOOST] = { "KSM_NPAGES_BOOST", TVK_INT, -U32, U32, 300, NULL, NULL, "pages", "classic",
			      "added to npages when free memory is below thres" },
	[TV_NPAGES_DECAY] = { "KSM_NPAGES_DECAY", TVK_INT, -U32, U32, -50, NULL, NULL, "pages", "classic",
			      "added to npages when free memory is not below thres" },
	[TV_NPAGES_MIN] = { "KSM_NPAGES_MIN", TVK_INT, 0, U32, 64, NULL, NULL, "pages", "classic",
			    "lowest pages_to_scan" },
	[TV_NPAGES_MAX] = { "KSM_NPAGES_MAX", TVK_INT, 0, U32, 1250, NULL, NULL, "pages", "classic",
			    "highest pages_to_scan" },
	[TV_SLEEP_MSEC] = { "KSM_SLEEP_MSEC", TVK_INT, 0, U32, 10, NULL, NULL, "ms", "both",
			    "sleep_millisecs for a 16 GiB host, scaled by 16 GiB / MemTotal, at least 10" },
	[TV_THRES_COEF] = { "KSM_THRES_COEF", TVK_INT, 0, 100, 20, NULL, NULL, "%", "both",
			    "thres as a percentage of MemTotal" },
	[TV_THRES_CONST] = { "KSM_THRES_CONST", TVK_INT, 0, 1LL << 50, 2048, NULL, NULL, "kB", "both",
			     "lowest thres" },
	[TV_DEBUG] = { "DEBUG", TVK_STR, 0, 0, 0, "", NULL, NULL, "both",
		       "log decisions when not empty (any value, even 0)" },
	[TV_LOGFILE] = { "LOGFILE", TVK_STR, 0, 0, 0, "", NULL, NULL, "both",
			 "file the debug log is appended to; standard output when empty" },
	[TV_PIDFILE] = { "PIDFILE", TVK_STR, 0, 0, 0, TUNE_DEFAULT_PIDFILE, NULL, NULL, "both",
			 "file holding the daemon's pid; none when empty" },
	[TV_POLICY] = { "KSM_POLICY", TVK_ENUM, 0, 0, TUNE_CLASSIC, "classic", policy_words, NULL, "both",
			"classic (the original algorithm) or adaptive" },
	[TV_PROCESS_PATTERN] = { "KSM_PROCESS_PATTERN", TVK_REGEX, 0, 0, 0, TUNE_DEFAULT_PATTERN, NULL, NULL,
				 "classic", "extended regular expression on a process's name: committed memory" },
	[TV_PS_METRIC] = { "KSM_PS_METRIC", TVK_ENUM, 0, 0, TUNE_RSZ, "rsz", metric_words, NULL, "classic",
			   "memory of a committed process: rsz (RSS), pss or vsz" },
	[TV_ADAPTIVE_INTERVAL] = { "KSM_ADAPTIVE_INTERVAL", TVK_INT, 1, 3600, 1, NULL, NULL, "s", "adaptive",
				   "seconds between two checks" },
	[TV_SCAN_TIME] = { "KSM_SCAN_TIME", TVK_INT, 1, 3600, 2, NULL, NULL, "s", "adaptive",
			   "target time of one full scan while merging" },
	[TV_MAX_CPU] = { "KSM_MAX_CPU", TVK_INT, 1, 100, 50, NULL, NULL, "%", "adaptive",
			 "most ksmd may use of one CPU while merging (advisor_max_cpu)" },
	[TV_PROFIT_MIN] = { "KSM_PROFIT_MIN", TVK_INT, 0, 1 << 20, 16, NULL, NULL, "MiB/CPU-s", "adaptive",
			    "scanning stops when a full scan earns less per ksmd CPU-second" },
	[TV_PSI_THRES] = { "KSM_PSI_THRES", TVK_INT, 0, 100, 10, NULL, NULL, "%", "adaptive",
			   "memory pressure from PSI some avg10 at or above this; 0 ignores PSI" },
	[TV_REPROBE] = { "KSM_REPROBE", TVK_INT, 0, 86400, 300, NULL, NULL, "s", "adaptive",
			 "after scanning stopped paying, scan again after this long (doubling); 0 never" },
	[TV_ADVISOR] = { "KSM_ADVISOR", TVK_ENUM, 0, 0, TUNE_ADVISOR_AUTO, "auto", advisor_words, NULL,
			 "adaptive", "use the kernel's scan-time advisor for sustained scanning" },
	[TV_ENGINE] = { "KSM_ENGINE", TVK_ENUM, 0, 0, TUNE_ENGINE_KERNEL, "kernel", engine_words, NULL, "both",
			"kernel (/sys/kernel/mm/ksm) or user (samepaged's control socket)" },
	[TV_ENGINE_SOCKET] = { "KSM_ENGINE_SOCKET", TVK_STR, 0, 0, 0, "", NULL, NULL, "both",
			       "samepaged's socket for KSM_ENGINE=user; empty: the user's daemon, else the system one" },
};

int tune_var_lookup(const char *name)
{
	for (int i = 0; i < TV_COUNT; i++)
		if (strcmp(tune_vars[i].name, name) == 0)
			return i;
	return -1;
}

static int64_t *int_slot(struct tune_config *c, int v)
{
	switch (v) {
	case TV_MONITOR_INTERVAL: return &c->monitor_interval;
	case TV_NPAGES_BOOST: return &c->npages_boost;
	case TV_NPAGES_DECAY: return &c->npages_decay;
	case TV_NPAGES_MIN: return &c->npages_min;
	case TV_NPAGES_MAX: return &c->npages_max;
	case TV_SLEEP_MSEC: return &c->sleep_msec;
	case TV_THRES_COEF: return &c->thres_coef;
	case TV_THRES_CONST: return &c->thres_const;
	case TV_ADAPTIVE_INTERVAL: return &c->adaptive_interval;
	case TV_SCAN_TIME: return &c->scan_time;
	case TV_MAX_CPU: return &c->max_cpu;
	case TV_PROFIT_MIN: return &c->profit_min;
	case TV_PSI_THRES: return &c->psi_thres;
	case TV_REPROBE: return &c->reprobe;
	default: return NULL;
	}
}

static char *str_slot(struct tune_config *c, int v)
{
	switch (v) {
	case TV_DEBUG: return c->debug;
	case TV_LOGFILE: return c->logfile;
	case TV_PIDFILE: return c->pidfile;
	case TV_PROCESS_PATTERN: return c->pattern;
	case TV_ENGINE_SOCKET: return c->engine_socket;
	default: return NULL;
	}
}

static int *enum_slot(struct tune_config *c, int v)
{
	switch (v) {
	case TV_POLICY: return (int *)&c->policy;
	case TV_PS_METRIC: return (int *)&c->metric;
	case TV_ADVISOR: return (int *)&c->advisor;
	case TV_ENGINE: return (int *)&c->engine;
	default: return NULL;
	}
}

void tune_var_format(const struct tune_config *c, int v, char *buf, size_t len)
{
	struct tune_config *m = (struct tune_config *)c;  /* the slots are only read here */
	const struct tune_var *t = &tune_vars[v];
	switch (t->kind) {
	case TVK_INT:
		snprintf(buf, len, "%" PRId64, *int_slot(m, v));
		break;
	case TVK_ENUM:
		snprintf(buf, len, "%s", t->words[*enum_slot(m, v)]);
		break;
	default:
		snprintf(buf, len, "%s", str_slot(m, v));
	}
}

void tune_config_defaults(struct tune_config *c)
{
	memset(c, 0, sizeof(*c));
	for (int v = 0; v < TV_COUNT; v++) {
		const struct tune_var *t = &tune_vars[v];
		if (t->kind == TVK_INT)
			*int_slot(c, v) = t->def;
		else if (t->kind == TVK_ENUM)
			*enum_slot(c, v) = (int)t->def;
		else
			snprintf(str_slot(c, v), TUNE_STR_MAX, "%s", t->def_str);
	}
}

/* ------------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------- */

struct parser {
	struct tune_config *c;
	const char *file;
	tune_warn_fn warn;
	void *ctx;
	int warnings;
};

static void warnf(struct parser *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warnf(struct parser *ps, int line, const char *fmt, ...)
{
	char msg[TUNE_STR_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ps->warnings++;
	if (ps->warn)
		ps->warn(ps->ctx, ps->file, line, msg);
}

/* "keeping 1250 (the default)" or "keeping 600 from line 3". */
static void keeping(const struct parser *ps, int v, char *buf, size_t len)
{
	char val[TUNE_STR_MAX];
	tune_var_format(ps->c, v, val, sizeof(val));
	if (ps->c->line[v])
		snprintf(buf, len, "keeping %s='%s' from line %d", tune_vars[v].name, val, ps->c->line[v]);
	else
		snprintf(buf, len, "keeping the default %s='%s'", tune_vars[v].name, val);
}

/* Decimal, optional sign, blanks around it allowed (as quoted values may
 * have). 0, -EINVAL not a number, -ERANGE beyond 64 bits. */
static int parse_int(const char *s, int64_t *out)
{
	while (*s == ' ' || *s == '\t')
		s++;
	bool neg = false;
	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (*s < '0' || *s > '9')
		return -EINVAL;
	uint64_t v = 0;
	bool big = false;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			big = true;
		else
			v = v * 10 + d;
	}
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s)
		return -EINVAL;
	if (big || v > (uint64_t)INT64_MAX)
		return -ERANGE;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

static void assign(struct parser *ps, int line, const char *name, const char *value)
{
	int v = tune_var_lookup(name);
	if (v < 0) {
		warnf(ps, line, "unknown variable %s; ignored", name);
		return;
	}
	const struct tune_var *t = &tune_vars[v];
	struct tune_config *c = ps->c;
	char keep[TUNE_STR_MAX + 64];
	keeping(ps, v, keep, sizeof(keep));

	if (t->kind == TVK_STR) {
		if (strlen(value) >= TUNE_STR_MAX) {
			warnf(ps, line, "%s: value longer than %d bytes; %s", name, TUNE_STR_MAX - 1, keep);
			return;
		}
		snprintf(str_slot(c, v), TUNE_STR_MAX, "%s", value);
		c->line[v] = line;
		return;
	}
	/* ${VAR:-default}: the original treats an empty value as unset. */
	if (value[0] == 0) {
		if (t->kind == TVK_INT)
			*int_slot(c, v) = t->def;
		else if (t->kind == TVK_ENUM)
			*enum_slot(c, v) = (int)t->def;
		else
			snprintf(str_slot(c, v), TUNE_STR_MAX, "%s", t->def_str);
		c->line[v] = line;
		return;
	}
	if (t->kind == TVK_INT) {
		int64_t x;
		int r = parse_int(value, &x);
		if (r == -EINVAL) {
			warnf(ps, line, "%s: '%s' is not a whole number; %s", name, value, keep);
			return;
		}
		if (r == -ERANGE || x < t->min || x > t->max) {
			warnf(ps, line, "%s: %s is out of range %" PRId64 "..%" PRId64 "%s%s; %s", name, value,
			      t->min, t->max, t->unit ? " " : "", t->unit ? t->unit : "", keep);
			return;
		}
		*int_slot(c, v) = x;
	} else if (t->kind == TVK_ENUM) {
		int found = -1;
		for (int i = 0; t->words[i]; i++)
			if (strcasecmp(value, t->words[i]) == 0)
				found = i;
		if (v == TV_PS_METRIC && strcasecmp(value, "rss") == 0)
			found = TUNE_RSZ;
		if (found < 0) {
			char list[128] = "";
			for (int i = 0; t->words[i]; i++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
					 t->words[i]);
			warnf(ps, line, "%s: '%s' is not one of %s; %s", name, value, list, keep);
			return;
		}
		*enum_slot(c, v) = found;
	} else {  /* TVK_REGEX */
		if (strlen(value) >= TUNE_STR_MAX) {
			warnf(ps, line, "%s: pattern longer than %d bytes; %s", name, TUNE_STR_MAX - 1, keep);
			return;
		}
		regex_t re;
		int r = regcomp(&re, value, REG_EXTENDED | REG_NOSUB);
		if (r) {
			char err[128];
			regerror(r, &re, err, sizeof(err));
			warnf(ps, line, "%s: '%s' is not an extended regular expression (%s); %s", name, value,
			      err, keep);
			return;
		}
		regfree(&re);
		snprintf(str_slot(c, v), TUNE_STR_MAX, "%s", value);
	}
	c->line[v] = line;
}

/* ------------------------------------------------------------------------
 * The shell subset
 * ---------------------------------------------------------------------- */

#define MAX_WORDS 32

struct word {
	char text[TUNE_STR_MAX + 64];
	size_t len;
	bool quoted;      /* any part quoted or escaped */
	int eq;           /* offset of the assignment '=', -1 if not an assignment */
	bool name_ok;     /* so far only unquoted name characters */
	bool too_long;
};

static bool name_char(char ch, bool first)
{
	return ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (!first && ch >= '0' && ch <= '9');
}

static void put(struct word *w, char ch, bool quoted)
{
	if (!quoted && w->eq < 0 && w->name_ok) {
		if (ch == '=' && w->len > 0) {
			w->eq = (int)w->len;
		} else if (!name_char(ch, w->len == 0)) {
			w->name_ok = false;
		}
	} else if (quoted && w->eq < 0) {
		w->name_ok = false;
	}
	if (quoted)
		w->quoted = true;
	if (w->len + 1 >= sizeof(w->text)) {
		w->too_long = true;
		return;
	}
	w->text[w->len++] = ch;
	w->text[w->len] = 0;
}

/* Skips the rest of the physical line (not its newline). */
static const char *to_eol(const char *p)
{
	while (*p && *p != '\n')
		p++;
	return p;
}

static void apply_statement(struct parser *ps, int line, struct word *w, int n)
{
	int first = 0;
	if (n > 0 && !w[0].quoted && strcmp(w[0].text, "export") == 0)
		first = 1;
	for (int i = first; i < n; i++) {
		if (w[i].too_long) {
			warnf(ps, line, "a word longer than %d bytes; line ignored", TUNE_STR_MAX);
			return;
		}
		if (w[i].eq >= 0)
			continue;
		if (first && w[i].name_ok)
			continue;  /* export NAME: nothing to assign */
		if (i + 1 < n && w[i].name_ok && w[i + 1].text[0] == '=' && !w[i + 1].quoted)
			warnf(ps, line, "'%s %s': a shell assignment has no spaces around '=' (write %s=%s); "
			      "line ignored", w[i].text, w[i + 1].text, w[i].text,
			      w[i + 1].text[1] ? w[i + 1].text + 1 : (i + 2 < n ? w[i + 2].text : ""));
		else if (i > first)
			warnf(ps, line, "'%s' is not a VAR=value assignment (the shell would run it as a "
			      "command); line ignored", w[i].text);
		else
			warnf(ps, line, "'%s' is not a VAR=value assignment; line ignored", w[i].text);
		return;
	}
	for (int i = first; i < n; i++) {
		if (w[i].eq < 0)
			continue;
		w[i].text[w[i].eq] = 0;
		assign(ps, line, w[i].text, w[i].text + w[i].eq + 1);
	}
}

int tune_config_parse(struct tune_config *c, const char *file, const char *text, tune_warn_fn warn,
		      void *ctx)
{
	struct parser ps = { c, file, warn, ctx, 0 };
	struct word words[MAX_WORDS];
	const char *p = text;
	int line = 1;
	while (*p) {
		int stmt_line = line, n = 0;
		const char *bad = NULL;
		char badbuf[96];
		bool done = false;
		while (!done) {
			while (*p == ' ' || *p == '\t' || (p[0] == '\\' && p[1] == '\n')) {
				if (*p == '\\') {
					p++;
					line++;
				}
				p++;
			}
			if (*p == 0)
				break;
			if (*p == '\n') {
				p++;
				line++;
				break;
			}
			if (*p == ';') {
				p++;
				break;
			}
			if (*p == '#') {
				p = to_eol(p);
				continue;
			}
			if (n == MAX_WORDS) {
				bad = "too many words";
				break;
			}
			struct word *w = &words[n++];
			memset(w, 0, sizeof(*w));
			w->eq = -1;
			w->name_ok = true;
			while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != ';' && !bad) {
				char ch = *p;
				if (ch == '\'') {
					const char *q = p + 1;
					while (*q && *q != '\'' && *q != '\n')
						q++;
					if (*q != '\'') {
						bad = "unterminated single quote (a quoted value must end on its line)";
						break;
					}
					if (q == p + 1)
						w->quoted = true, w->name_ok = w->eq >= 0 ? w->name_ok : false;
					for (const char *s = p + 1; s < q; s++)
						put(w, *s, true);
					p = q + 1;
				} else if (ch == '"') {
					const char *q = p + 1;
					bool any = false;
					for (; *q && *q != '"' && *q != '\n' && !bad; q++) {
						if (*q == '\\' && q[1] && strchr("$`\"\\", q[1])) {
							put(w, q[1], true);
							q++;
						} else if (*q == '\\' && q[1] == '\n') {
							bad = "unterminated double quote (a quoted value must end on its line)";
						} else if (*q == '$' || *q == '`') {
							snprintf(badbuf, sizeof(badbuf),
								 "'%c' expansion is not supported (values are literal)", *q);
							bad = badbuf;
						} else {
							put(w, *q, true);
						}
						any = true;
					}
					if (bad)
						break;
					if (*q != '"') {
						bad = "unterminated double quote (a quoted value must end on its line)";
						break;
					}
					if (!any)
						w->quoted = true, w->name_ok = w->eq >= 0 ? w->name_ok : false;
					p = q + 1;
				} else if (ch == '\\') {
					if (p[1] == '\n') {
						p += 2;
						line++;
					} else if (p[1] == 0) {
						p++;
					} else {
						put(w, p[1], true);
						p += 2;
					}
				} else if (ch == '$' || ch == '`') {
					snprintf(badbuf, sizeof(badbuf),
						 "'%c' expansion is not supported (values are literal)", ch);
					bad = badbuf;
				} else if (strchr("&|<>()", ch)) {
					snprintf(badbuf, sizeof(badbuf), "shell operator '%c' is not supported", ch);
					bad = badbuf;
				} else {
					put(w, ch, false);
					p++;
				}
			}
			if (bad)
				break;
		}
		if (bad) {
			warnf(&ps, stmt_line, "%s; line ignored", bad);
			p = to_eol(p);
			continue;
		}
		if (n)
			apply_statement(&ps, stmt_line, words, n);
	}
	/* Not an error in the original, but surely not what was meant. */
	if (c->npages_min > c->npages_max) {
		int l = c->line[TV_NPAGES_MIN] > c->line[TV_NPAGES_MAX] ? c->line[TV_NPAGES_MIN]
									: c->line[TV_NPAGES_MAX];
		warnf(&ps, l, "KSM_NPAGES_MIN (%" PRId64 ") is above KSM_NPAGES_MAX (%" PRId64
		      "): pages_to_scan will always be KSM_NPAGES_MIN, as with the original",
		      c->npages_min, c->npages_max);
	}
	return ps.warnings;
}

int tune_config_load(struct tune_config *c, const char *path, tune_warn_fn warn, void *ctx)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t cap = 4096, len = 0;
	char *text = malloc(cap);
	if (!text) {
		fclose(f);
		return -ENOMEM;
	}
	errno = 0;
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= (1u << 20)) {
				free(text);
				fclose(f);
				return -EFBIG;
			}
			char *g = realloc(text, cap *= 2);
			if (!g) {
				free(text);
				fclose(f);
				return -ENOMEM;
			}
			text = g;
		}
		size_t r = fread(text + len, 1, cap - len - 1, f);
		if (r == 0)
			break;
		len += r;
	}
	int err = ferror(f) ? (errno ? -errno : -EIO) : 0;
	fclose(f);
	if (err) {
		free(text);
		return err;
	}
	text[len] = 0;
	if (strlen(text) != len) {
		free(text);
		return -EILSEQ;  /* NUL bytes: not a text file */
	}
	struct tune_config tmp = *c;
	int n = tune_config_parse(&tmp, path, text, warn, ctx);
	free(text);
	*c = tmp;
	return n;
}

/* stoplib: library functions the time limit can stop (the contract is in
 * stoplib.h).
 *
 * Why not LuaJIT's own: a C function runs until it returns, and the
 * sandbox's hook only stops a call at a VM instruction. Stopping a C
 * function from outside (a signal that longjmps out of it) would leave
 * whatever it was doing half done: a malloc lock held, a table half
 * rebuilt. So these do their work in steps and, every CHECK_EVERY units of
 * it (a unit is a few nanoseconds here: one step of the matcher, a few
 * bytes scanned or copied, one comparison), ask the sandbox whether the
 * call is overdue (zf_sandbox_check_time), which raises the time limit's
 * error from a point where everything is consistent.
 *
 * Each follows what LuaJIT 2.1 does, step for step where the order can be
 * seen: the pattern matcher is Lua 5.1's algorithm (lstrlib.c, MIT
 * licence) with LuaJIT's changes (a recursion limit of 200, "pattern too
 * complex"; string.find's start clamped to the end; plain search when the
 * pattern has no special characters); table.sort is Lua 5.1's quicksort,
 * the same comparisons in the same order, so that an inconsistent order
 * function gives the same result (or error) as with LuaJIT. Integer
 * arguments are read as LuaJIT's own functions read them (check_int). */
#include "zkflow/stoplib.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "zkflow/sandbox.h"

/* Units of work between two looks at the clock: ~20-80 us of work. A look
 * costs a few loads (zf_sandbox_check_time), so this is far below 1% of
 * the work in between. */
#define CHECK_EVERY 8192

/* Spend n units; look at the clock when the budget is used up. */
static inline void spend(lua_State *L, long *left, long n) {
    if ((*left -= n) < 0) {
        *left = CHECK_EVERY;
        zf_sandbox_check_time(L);
    }
}

/* An integer argument as LuaJIT's library functions take it
 * (lj_lib_checkint): a number, or a string that converts to one,
 * truncated to int32_t as x86-64's conversion does it, which gives
 * INT32_MIN for anything out of range (and NaN). */
static int32_t check_int(lua_State *L, int arg) {
    lua_Number d = luaL_checknumber(L, arg);
    return d > -2147483649.0 && d < 2147483648.0 ? (int32_t)d : INT32_MIN;
}

static int32_t opt_int(lua_State *L, int arg, int32_t def) {
    return lua_isnoneornil(L, arg) ? def : check_int(L, arg);
}

/* ---- character classes (ASCII only, as LuaJIT's lj_char) ----------------- */

enum {
    CH_CNTRL = 1, CH_SPACE = 2, CH_PUNCT = 4, CH_DIGIT = 8, CH_XDIGIT = 16,
    CH_UPPER = 32, CH_LOWER = 64, CH_ALPHA = 128, CH_GRAPH = 256,
};

/* The classes of each byte: the C locale's for ASCII, none above. */
static const unsigned short char_bits[256] = {
    [0x00 ... 0x08] = CH_CNTRL,
    [0x09 ... 0x0d] = CH_CNTRL | CH_SPACE,
    [0x0e ... 0x1f] = CH_CNTRL,
    [' '] = CH_SPACE,
    ['!' ... '/'] = CH_GRAPH | CH_PUNCT,
    ['0' ... '9'] = CH_GRAPH | CH_DIGIT | CH_XDIGIT,
    [':' ... '@'] = CH_GRAPH | CH_PUNCT,
    ['A' ... 'F'] = CH_GRAPH | CH_UPPER | CH_ALPHA | CH_XDIGIT,
    ['G' ... 'Z'] = CH_GRAPH | CH_UPPER | CH_ALPHA,
    ['[' ... '`'] = CH_GRAPH | CH_PUNCT,
    ['a' ... 'f'] = CH_GRAPH | CH_LOWER | CH_ALPHA | CH_XDIGIT,
    ['g' ... 'z'] = CH_GRAPH | CH_LOWER | CH_ALPHA,
    ['{' ... '~'] = CH_GRAPH | CH_PUNCT,
    [0x7f] = CH_CNTRL,
};

static inline int is_digit(int c) { return char_bits[c] & CH_DIGIT; }

/* Whether c (0..255) is in the class of %cl; a class letter in upper case
 * is the complement, anything else stands for itself. */
static inline int in_class(int c, int cl) {
    unsigned mask;
    switch (cl | 0x20) { /* lower case: only letters become class letters */
    case 'a': mask = CH_ALPHA; break;
    case 'c': mask = CH_CNTRL; break;
    case 'd': mask = CH_DIGIT; break;
    case 'g': mask = CH_GRAPH; break;
    case 'l': mask = CH_LOWER; break;
    case 'p': mask = CH_PUNCT; break;
    case 's': mask = CH_SPACE; break;
    case 'u': mask = CH_UPPER; break;
    case 'w': mask = CH_ALPHA | CH_DIGIT; break;
    case 'x': mask = CH_XDIGIT; break;
    case 'z': return (c == 0) == (cl == 'z');
    default: return cl == c;
    }
    int r = (char_bits[c] & mask) != 0;
    return cl >= 'a' ? r : !r;
}

/* ---- the pattern matcher ------------------------------------------------- */

#define ESC '%'
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
/* LuaJIT's LJ_MAX_XLEVEL: nesting of do_match past this raises. */
#define MAX_DEPTH 200

typedef struct matcher {
    lua_State *L;
    const char *src; /* the subject, src[end - src] is its NUL */
    const char *end;
    int level; /* captures opened so far, finished or not */
    int depth; /* do_match calls in progress */
    long left; /* work until the next look at the clock */
    struct {
        const char *init;
        ptrdiff_t len; /* or CAP_UNFINISHED, CAP_POSITION */
    } cap[LUA_MAXCAPTURES];
} matcher_t;

static void matcher_init(matcher_t *m, lua_State *L, const char *s,
                         size_t len) {
    m->L = L;
    m->src = s;
    m->end = s + len;
    m->left = CHECK_EVERY;
}

/* The end of the single-character class starting at p. */
static inline const char *class_end(matcher_t *m, const char *p) {
    switch (*p++) {
    case ESC:
        if (*p == '\0')
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[':
        if (*p == '^')
            p++;
        do { /* the first character is never the closing ']' */
            if (*p == '\0')
                luaL_error(m->L, "malformed pattern (missing ']')");
            if (*p++ == ESC && *p != '\0')
                p++;
        } while (*p != ']');
        return p + 1;
    default:
        return p;
    }
}

/* Whether c is in the set [...] from p (its '[') to last (its ']'). */
static inline int in_set(int c, const char *p, const char *last) {
    int yes = 1;
    if (p[1] == '^') {
        yes = 0;
        p++;
    }
    while (++p < last) {
        if (*p == ESC) {
            p++;
            if (in_class(c, (unsigned char)*p))
                return yes;
        } else if (p[1] == '-' && p + 2 < last) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return yes;
        } else if ((unsigned char)*p == c) {
            return yes;
        }
    }
    return !yes;
}

/* Whether c matches the single-character class from p to ep. */
static inline int single_match(int c, const char *p, const char *ep) {
    switch (*p) {
    case '.': return 1;
    case ESC: return in_class(c, (unsigned char)p[1]);
    case '[': return in_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *do_match(matcher_t *m, const char *s, const char *p);

/* %bxy at p (x at p[0]). */
static const char *match_balance(matcher_t *m, const char *s,
                                 const char *p) {
    if (p[0] == '\0' || p[1] == '\0')
        luaL_error(m->L, "unbalanced pattern");
    if (*s != *p)
        return NULL;
    int open = p[0], close = p[1], depth = 1;
    unsigned scanned = 0;
    while (++s < m->end) {
        if (++scanned % 1024 == 0)
            spend(m->L, &m->left, 256);
        if (*s == close) {
            if (--depth == 0)
                return s + 1;
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

/* x* (or x+ past its first): the longest run first, then shorter. */
static const char *max_expand(matcher_t *m, const char *s, const char *p,
                              const char *ep) {
    ptrdiff_t i = 0;
    while (s + i < m->end && single_match((unsigned char)s[i], p, ep)) {
        if (++i % 1024 == 0)
            spend(m->L, &m->left, 256);
    }
    for (; i >= 0; i--) {
        const char *r = do_match(m, s + i, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* x-: the shortest run first, then longer. */
static const char *min_expand(matcher_t *m, const char *s, const char *p,
                              const char *ep) {
    for (;;) {
        const char *r = do_match(m, s, ep + 1);
        if (r)
            return r;
        if (s < m->end && single_match((unsigned char)*s, p, ep))
            s++;
        else
            return NULL;
    }
}

static const char *start_capture(matcher_t *m, const char *s, const char *p,
                                 int what) {
    int level = m->level;
    if (level >= LUA_MAXCAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[level].init = s;
    m->cap[level].len = what;
    m->level = level + 1;
    const char *r = do_match(m, s, p);
    if (!r)
        m->level--;
    return r;
}

static const char *end_capture(matcher_t *m, const char *s, const char *p) {
    int l = m->level - 1;
    while (l >= 0 && m->cap[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[l].len = s - m->cap[l].init;
    const char *r = do_match(m, s, p);
    if (!r)
        m->cap[l].len = CAP_UNFINISHED;
    return r;
}

/* %1-%9 (digit d): the text of that capture again. */
static const char *match_capture(matcher_t *m, const char *s, int d) {
    int l = d - '1';
    if (l < 0 || l >= m->level || m->cap[l].len == CAP_UNFINISHED)
        luaL_error(m->L, "invalid capture index");
    size_t len = (size_t)m->cap[l].len; /* huge for a position capture */
    if ((size_t)(m->end - s) < len)
        return NULL;
    spend(m->L, &m->left, (long)(len / 16));
    return memcmp(m->cap[l].init, s, len) == 0 ? s + len : NULL;
}

/* Match pattern p at s: the end of the match, or NULL. The pattern is read
 * up to its first NUL, as LuaJIT does. */
static const char *do_match(matcher_t *m, const char *s, const char *p) {
    if (++m->depth > MAX_DEPTH)
        luaL_error(m->L, "pattern too complex");
again: /* a tail call of do_match, without the depth */
    if (--m->left < 0)
        spend(m->L, &m->left, 0);
    switch (*p) {
    case '(':
        if (p[1] == ')')
            s = start_capture(m, s, p + 2, CAP_POSITION);
        else
            s = start_capture(m, s, p + 1, CAP_UNFINISHED);
        break;
    case ')':
        s = end_capture(m, s, p + 1);
        break;
    case ESC:
        if (p[1] == 'b') {
            s = match_balance(m, s, p + 2);
            if (!s)
                break;
            p += 4;
            goto again;
        }
        if (p[1] == 'f') {
            p += 2;
            if (*p != '[')
                luaL_error(m->L, "missing '[' after '%%f' in pattern");
            const char *ep = class_end(m, p);
            int prev = s == m->src ? '\0' : (unsigned char)s[-1];
            if (in_set(prev, p, ep - 1) ||
                !in_set((unsigned char)*s, p, ep - 1)) {
                s = NULL;
                break;
            }
            p = ep;
            goto again;
        }
        if (is_digit((unsigned char)p[1])) {
            s = match_capture(m, s, (unsigned char)p[1]);
            if (!s)
                break;
            p += 2;
            goto again;
        }
        goto single;
    case '\0': /* the end of the pattern: a match */
        break;
    case '$':
        if (p[1] != '\0')
            goto single;
        if (s != m->end)
            s = NULL;
        break;
    default:
    single: {
        const char *ep = class_end(m, p);
        int ok = s < m->end && single_match((unsigned char)*s, p, ep);
        switch (*ep) {
        case '?': {
            const char *r;
            if (ok && (r = do_match(m, s + 1, ep + 1)) != NULL) {
                s = r;
                break;
            }
            p = ep + 1;
            goto again;
        }
        case '*':
            s = max_expand(m, s, p, ep);
            break;
        case '+':
            s = ok ? max_expand(m, s + 1, p, ep) : NULL;
            break;
        case '-':
            s = min_expand(m, s, p, ep);
            break;
        default:
            if (!ok) {
                s = NULL;
                break;
            }
            s++;
            p = ep;
            goto again;
        }
        break;
    }
    }
    m->depth--;
    return s;
}

/* Push capture i of the match s..e (the whole match when there are no
 * captures and i is 0). */
static void push_capture(matcher_t *m, int i, const char *s, const char *e) {
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index");
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_UNFINISHED)
        luaL_error(m->L, "unfinished capture");
    if (len == CAP_POSITION)
        lua_pushinteger(m->L, m->cap[i].init - m->src + 1);
    else
        lua_pushlstring(m->L, m->cap[i].init, (size_t)len);
}

/* Push all captures (or the whole match s..e when there are none and s is
 * not NULL); returns how many. */
static int push_captures(matcher_t *m, const char *s, const char *e) {
    int n = m->level == 0 && s ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ---- string.find, match, gmatch, gsub ------------------------------------ */

/* Whether LuaJIT would take p (all len bytes of it) as a pattern rather
 * than plain text. */
static int has_specials(const char *p, size_t len) {
    static const unsigned char special[256] = {
        ['^'] = 1, ['$'] = 1, ['*'] = 1, ['+'] = 1, ['?'] = 1,
        ['.'] = 1, ['('] = 1, ['['] = 1, ['%'] = 1, ['-'] = 1,
    };
    for (size_t i = 0; i < len; i++)
        if (special[(unsigned char)p[i]])
            return 1;
    return 0;
}

/* The first n (of length nl) in h (of length hl), as LuaJIT searches:
 * each occurrence of n's first byte, then a compare. Quadratic at worst
 * (a long needle that almost matches everywhere), hence the clock. */
static const char *plain_find(lua_State *L, const char *h, size_t hl,
                              const char *n, size_t nl) {
    if (nl > hl)
        return NULL;
    if (nl == 0)
        return h;
    long left = CHECK_EVERY;
    int first = (unsigned char)n[0];
    n++;
    nl--;
    hl -= nl; /* candidates for the first byte */
    while (hl > 0) {
        const char *q = memchr(h, first, hl);
        if (!q)
            return NULL;
        spend(L, &left, (long)((size_t)(q - h) / 32 + nl / 16) + 1);
        if (memcmp(q + 1, n, nl) == 0)
            return q;
        q++;
        hl -= (size_t)(q - h);
        h = q;
    }
    return NULL;
}

static int find_aux(lua_State *L, int find) {
    size_t len, plen;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *p = luaL_checklstring(L, 2, &plen);
    int32_t start = opt_int(L, 3, 1);
    if (start < 0)
        start += (int32_t)len;
    else
        start--;
    size_t st = start < 0 ? 0 : (size_t)start;
    if (st > len)
        st = len;
    if (find && (lua_toboolean(L, 4) || !has_specials(p, plen))) {
        const char *q = plain_find(L, s + st, len - st, p, plen);
        if (q) {
            lua_pushinteger(L, q - s + 1);
            lua_pushinteger(L, (lua_Integer)(q - s + plen));
            return 2;
        }
    } else {
        matcher_t m;
        matcher_init(&m, L, s, len);
        int anchor = *p == '^';
        if (anchor)
            p++;
        const char *at = s + st;
        do {
            m.level = m.depth = 0;
            const char *e = do_match(&m, at, p);
            if (e) {
                if (!find)
                    return push_captures(&m, at, e);
                lua_pushinteger(L, at - s + 1);
                lua_pushinteger(L, e - s);
                return push_captures(&m, NULL, NULL) + 2;
            }
        } while (at++ < m.end && !anchor);
    }
    lua_pushnil(L);
    return 1;
}

static int str_find(lua_State *L) { return find_aux(L, 1); }

static int str_match(lua_State *L) { return find_aux(L, 0); }

/* gmatch's state, upvalue 1 of its iterator; upvalues 2 and 3 keep the
 * subject and the pattern (which do not move) alive. */
typedef struct gmatch_state {
    const char *s;
    size_t len;
    const char *p;
    size_t pos; /* where the next match may start */
} gmatch_t;

static int gmatch_next(lua_State *L) {
    gmatch_t *g = lua_touserdata(L, lua_upvalueindex(1));
    matcher_t m;
    matcher_init(&m, L, g->s, g->len);
    for (const char *at = g->s + g->pos; at <= m.end; at++) {
        m.level = m.depth = 0;
        const char *e = do_match(&m, at, g->p);
        if (e) {
            /* Past an empty match, so that the next call moves on. */
            g->pos = (size_t)(e - g->s) + (e == at);
            return push_captures(&m, at, e);
        }
    }
    return 0;
}

static int str_gmatch(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *p = luaL_checkstring(L, 2);
    lua_settop(L, 2);
    gmatch_t *g = lua_newuserdata(L, sizeof *g);
    *g = (gmatch_t){s, len, p, 0};
    lua_insert(L, 1);
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* gsub's replacement string (argument 3) for the match s..e. */
static void add_string(matcher_t *m, luaL_Buffer *b, const char *s,
                       const char *e) {
    size_t len;
    const char *r = lua_tolstring(m->L, 3, &len);
    spend(m->L, &m->left, (long)(len / 16));
    for (size_t i = 0; i < len; i++) {
        if (r[i] != ESC) {
            luaL_addchar(b, r[i]);
            continue;
        }
        i++; /* a final '%' takes the string's NUL */
        if (!is_digit((unsigned char)r[i])) {
            luaL_addchar(b, r[i]);
        } else if (r[i] == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else {
            push_capture(m, r[i] - '1', s, e);
            luaL_addvalue(b);
        }
    }
}

/* gsub's replacement (argument 3) for the match s..e. */
static void add_value(matcher_t *m, luaL_Buffer *b, const char *s,
                      const char *e) {
    lua_State *L = m->L;
    switch (lua_type(L, 3)) {
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
        break;
    default: /* string or number */
        add_string(m, b, s, e);
        return;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the match */
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)",
                   luaL_typename(L, -1));
    }
    spend(L, &m->left, (long)(lua_objlen(L, -1) / 16));
    luaL_addvalue(b);
}

static int str_gsub(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *p = luaL_checkstring(L, 2);
    int tr = lua_type(L, 3);
    int max = luaL_optint(L, 4, (int)(len + 1));
    if (!(tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
          tr == LUA_TTABLE))
        luaL_argerror(L, 3, "string/function/table expected");
    int anchor = *p == '^';
    if (anchor)
        p++;
    matcher_t m;
    matcher_init(&m, L, s, len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int n = 0;
    while (n < max) {
        m.level = m.depth = 0;
        const char *e = do_match(&m, s, p);
        if (e) {
            n++;
            add_value(&m, &b, s, e);
        }
        if (e && e > s)
            s = e;
        else if (s < m.end)
            luaL_addchar(&b, *s++);
        else
            break;
        if (anchor)
            break;
    }
    luaL_addlstring(&b, s, (size_t)(m.end - s));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

/* ---- string.rep ---------------------------------------------------------- */

/* LuaJIT's longest string (LJ_MAX_STR). */
#define MAX_STR 0x7fffff00u

/* string.rep copies at most this much at once. */
#define REP_CHUNK (1024 * 1024)

/* s repeated n times, sep between. Built in a buffer of the result's size
 * (a userdata past 1 KB) by doubling copies (each one checked), then made
 * a string. */
static int str_rep(lua_State *L) {
    size_t len, seplen;
    const char *s = luaL_checklstring(L, 1, &len);
    int32_t n = check_int(L, 2);
    const char *sep = luaL_optlstring(L, 3, NULL, &seplen);
    /* s, then (sep s) n - 1 times; without sep, (s) n times. The
     * repeated unit starts at head. */
    int with_sep = sep && n > 1;
    size_t head = with_sep ? len : 0, unit = with_sep ? seplen + len : len;
    uint64_t units = with_sep ? (uint64_t)n - 1 : n > 0 ? (uint64_t)n : 0;
    uint64_t total = head + units * unit;
    if (total > MAX_STR) {
        /* LuaJIT raises its out-of-memory error here. */
        lua_pushliteral(L, "not enough memory");
        return lua_error(L);
    }
    if (total == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    /* Short results (most) on the C stack. */
    char local[1024];
    char *buf = total <= sizeof local ? local
                                      : lua_newuserdata(L, (size_t)total);
    long left = CHECK_EVERY;
    memcpy(buf, s, len);
    if (with_sep) {
        memcpy(buf + head, sep, seplen);
        memcpy(buf + head + seplen, s, len);
    }
    /* buf[head..done) holds whole units: copy them after it, doubling
     * them until full, in whole units of at most REP_CHUNK bytes (unless
     * one unit is larger), since copying to fresh memory takes its time
     * too (100 MB: tens of ms). */
    size_t done = head + unit;
    size_t chunk = unit >= REP_CHUNK ? unit : REP_CHUNK / unit * unit;
    while (done < total) {
        size_t k = done - head;
        if (k > chunk)
            k = chunk;
        if (k > total - done)
            k = (size_t)total - done;
        memcpy(buf + done, buf + head, k);
        done += k;
        spend(L, &left, (long)(k / 16));
    }
    lua_pushlstring(L, buf, (size_t)total);
    return 1;
}

/* ---- table.concat, insert, sort ------------------------------------------ */

/* An integer below 1e14 in magnitude as tostring writes it (all its
 * digits, as "%.14g" does) into buf, of at least 16 bytes, without making a
 * Lua string of it, as LuaJIT's table.concat does not; returns the length,
 * or 0 for any other number (LuaJIT's formatting then, which rounds ties
 * away from zero where C's printf rounds them to even). */
static size_t format_integer(char *buf, lua_Number v) {
    if (!(v > -1e14 && v < 1e14 && v == (lua_Number)(int64_t)v) ||
        (v == 0 && signbit(v)))
        return 0;
    int64_t i = (int64_t)v;
    uint64_t u = i < 0 ? (uint64_t)-i : (uint64_t)i;
    char tmp[16];
    size_t n = 0, len = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (i < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

static int tab_concat(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t seplen;
    const char *sep = luaL_optlstring(L, 2, "", &seplen);
    int32_t i = opt_int(L, 3, 1);
    int32_t last = lua_isnoneornil(L, 4) ? (int32_t)lua_objlen(L, 1)
                                         : check_int(L, 4);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    long left = CHECK_EVERY;
    for (int64_t k = i; k <= last; k++) {
        lua_rawgeti(L, 1, (int)k);
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "invalid value (%s) at index %d in table for "
                          "'concat'",
                       luaL_typename(L, -1), (int)k);
        char num[16];
        size_t len;
        if (t == LUA_TNUMBER &&
            (len = format_integer(num, lua_tonumber(L, -1))) > 0) {
            lua_pop(L, 1);
            luaL_addlstring(&b, num, len);
            spend(L, &left, 8);
        } else {
            spend(L, &left, 4 + (long)(lua_objlen(L, -1) / 16));
            luaL_addvalue(&b);
        }
        if (k < last)
            luaL_addlstring(&b, sep, seplen);
    }
    luaL_pushresult(&b);
    return 1;
}

static int tab_insert(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int32_t i = (int32_t)lua_objlen(L, 1) + 1; /* where the value goes */
    int nargs = lua_gettop(L);
    if (nargs != 2) {
        if (nargs != 3)
            luaL_error(L, "wrong number of arguments to 'insert'");
        /* Move t[pos..] up by one, from the top down: up to 2^31 moves
         * for a position far below 1. */
        int32_t pos = check_int(L, 2);
        long left = CHECK_EVERY;
        for (; i > pos; i--) {
            lua_rawgeti(L, 1, i - 1);
            lua_rawseti(L, 1, i);
            spend(L, &left, 8);
        }
        i = pos;
    }
    lua_rawseti(L, 1, i); /* the value: the last argument, on top */
    return 0;
}

/* table.sort's state: the table is argument 1, the order function (or
 * nil) argument 2. */
typedef struct sorter {
    lua_State *L;
    long left;
} sorter_t;

/* Whether the value at a is less than the one at b (negative indices). */
static int sort_less(sorter_t *st, int a, int b) {
    lua_State *L = st->L;
    spend(L, &st->left, 16);
    if (lua_isnil(L, 2))
        return lua_lessthan(L, a, b);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a - 1);
    lua_pushvalue(L, b - 2);
    lua_call(L, 2, 1);
    int r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

/* t[i] = top, t[j] = the one below; pops both. */
static void set2(lua_State *L, int i, int j) {
    lua_rawseti(L, 1, i);
    lua_rawseti(L, 1, j);
}

/* Lua 5.1's quicksort of t[lo..up]: median of three as the pivot,
 * recursion on the smaller part. */
static void sort_range(sorter_t *st, int lo, int up) {
    lua_State *L = st->L;
    while (lo < up) {
        /* Order t[lo], t[mid], t[up]. */
        lua_rawgeti(L, 1, lo);
        lua_rawgeti(L, 1, up);
        if (sort_less(st, -1, -2))
            set2(L, lo, up);
        else
            lua_pop(L, 2);
        if (up - lo == 1)
            break;
        int i = (lo + up) / 2, j;
        lua_rawgeti(L, 1, i);
        lua_rawgeti(L, 1, lo);
        if (sort_less(st, -2, -1)) {
            set2(L, i, lo);
        } else {
            lua_pop(L, 1);
            lua_rawgeti(L, 1, up);
            if (sort_less(st, -1, -2))
                set2(L, i, up);
            else
                lua_pop(L, 2);
        }
        if (up - lo == 2)
            break;
        /* The pivot P = t[mid] goes to up - 1; partition lo + 1 .. up - 2. */
        lua_rawgeti(L, 1, i);
        lua_pushvalue(L, -1);
        lua_rawgeti(L, 1, up - 1);
        set2(L, i, up - 1);
        i = lo;
        j = up - 1;
        for (;;) {
            /* t[lo..i] <= P <= t[j..up] */
            while (lua_rawgeti(L, 1, ++i), sort_less(st, -1, -2)) {
                if (i >= up)
                    luaL_error(L, "invalid order function for sorting");
                lua_pop(L, 1);
            }
            while (lua_rawgeti(L, 1, --j), sort_less(st, -3, -1)) {
                if (j <= lo)
                    luaL_error(L, "invalid order function for sorting");
                lua_pop(L, 1);
            }
            if (j < i) {
                lua_pop(L, 3);
                break;
            }
            set2(L, i, j);
        }
        lua_rawgeti(L, 1, up - 1);
        lua_rawgeti(L, 1, i);
        set2(L, up - 1, i);
        /* Recurse into the smaller of lo..i-1 and i+1..up. */
        if (i - lo < up - i) {
            j = lo;
            i = i - 1;
            lo = i + 2;
        } else {
            j = i + 1;
            i = up;
            up = j - 2;
        }
        sort_range(st, j, i);
    }
}

static int tab_sort(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_objlen(L, 1);
    lua_settop(L, 2);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    sorter_t st = {L, CHECK_EVERY};
    sort_range(&st, 1, n);
    return 0;
}

/* ---- public -------------------------------------------------------------- */

void zf_stoplib_open(lua_State *L) {
    static const luaL_Reg string_fns[] = {
        {"find", str_find},   {"match", str_match}, {"gmatch", str_gmatch},
        {"gsub", str_gsub},   {"rep", str_rep},     {NULL, NULL},
    };
    static const luaL_Reg table_fns[] = {
        {"concat", tab_concat},
        {"insert", tab_insert},
        {"sort", tab_sort},
        {NULL, NULL},
    };
    lua_getglobal(L, "string");
    luaL_register(L, NULL, string_fns);
    lua_getglobal(L, "table");
    luaL_register(L, NULL, table_fns);
    lua_pop(L, 2);
}

/* The walk of scan.Scanner, step for step: levels of sorted keys, ranges, excludes,
 * folders opened relative to their parent; each entry is stat-ed once. */

#include "walk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* scan.Scanner._touches: some path starting with prefix lies in [lo, hi). */
static int touches(Walk *w, const char *p, size_t n) {
    const char *lo = PyBytes_AS_STRING(w->lo);
    size_t nlo = (size_t)PyBytes_GET_SIZE(w->lo);
    if (w->hi != Py_None &&
        cmp_bytes(p, n, PyBytes_AS_STRING(w->hi), (size_t)PyBytes_GET_SIZE(w->hi)) >= 0)
        return 0;
    return cmp_bytes(lo, nlo, p, n) <= 0 || starts_with(lo, nlo, p, n);
}

/* scan.Scanner._holds: every path starting with prefix lies in [lo, hi). */
static int holds(Walk *w, const char *p, size_t n) {
    const char *lo = PyBytes_AS_STRING(w->lo);
    size_t nlo = (size_t)PyBytes_GET_SIZE(w->lo);
    if (nlo == 0 && w->hi == Py_None) return 1;
    if (cmp_bytes(lo, nlo, p, n) > 0) return 0;
    if (w->hi == Py_None) return 1;
    const char *hi = PyBytes_AS_STRING(w->hi);
    size_t nhi = (size_t)PyBytes_GET_SIZE(w->hi);
    return cmp_bytes(p, n, hi, nhi) < 0 && !starts_with(hi, nhi, p, n);
}

static int in_range(Walk *w, const char *p, size_t n) {
    if (cmp_bytes(PyBytes_AS_STRING(w->lo), (size_t)PyBytes_GET_SIZE(w->lo), p, n) > 0)
        return 0;
    return w->hi == Py_None ||
           cmp_bytes(p, n, PyBytes_AS_STRING(w->hi), (size_t)PyBytes_GET_SIZE(w->hi)) < 0;
}

void tw_level_free(Walk *w, Level *L) {
    free(L->prefix.p);
    tw_listing_free(&L->listing);
    free(L->keys);
    for (size_t i = 0; i < L->npending; i++) {
        free(L->pending[i].name.p);
        tw_listing_free(&L->pending[i].listing);
        tw_here_close(w, &L->pending[i].here);
    }
    free(L->pending);
    Py_XDECREF(L->matcher);
    tw_here_close(w, &L->here);
    memset(L, 0, sizeof *L);
}

/* scan.Scanner._level: push a level for prefix, taking over the listing and the folder. */
int tw_push_level(Walk *w, const char *prefix, size_t n, Listing *listing, Here *here) {
    if (w->depth == w->cap_stack) {
        size_t cap = w->cap_stack ? 2 * w->cap_stack : 16;
        Level *s = realloc(w->stack, cap * sizeof *s);
        if (!s) { PyErr_NoMemory(); return -1; }
        w->stack = s; w->cap_stack = cap;
    }
    Level *L = &w->stack[w->depth++];
    memset(L, 0, sizeof *L);
    L->listing = *listing;
    memset(listing, 0, sizeof *listing);
    L->here = *here;
    memset(here, 0, sizeof *here);
    here->fd = -1;
    if (tw_buf_set(&L->prefix, prefix, n, "", 0, 0) < 0) goto fail;
    size_t nkeys = 0;
    for (size_t i = 0; i < L->listing.n; i++) nkeys += 1 + (L->listing.items[i].is_dir != 0);
    L->keys = malloc((nkeys ? nkeys : 1) * sizeof *L->keys);
    if (!L->keys) { PyErr_NoMemory(); goto fail; }
    for (size_t i = 0; i < L->listing.n; i++) {
        L->keys[L->nkeys++] = (Key){i, 0};
        if (L->listing.items[i].is_dir) L->keys[L->nkeys++] = (Key){i, 1};
    }
    tw_sort_keys(&L->listing, L->keys, L->nkeys);
    L->whole = holds(w, prefix, n);
    const char *slash = memchr(prefix, '/', n);
    size_t top = slash ? (size_t)(slash - prefix) : n;
    L->cut = top + 1;
    /* None, or (matcher, None or excludes.first_bytes' table of 256 flags) */
    PyObject *m = PyObject_CallFunction(w->matcher_for, "y#", prefix, (Py_ssize_t)top);
    if (!m) goto fail;
    if (m != Py_None) {
        PyObject *table;
        if (!PyArg_ParseTuple(m, "OO", &L->matcher, &table)) { Py_DECREF(m); goto fail; }
        Py_INCREF(L->matcher);
        if (PyBytes_Check(table) && PyBytes_GET_SIZE(table) == 256) {
            memcpy(L->first, PyBytes_AS_STRING(table), 256);
            L->filtered = 1;
        }
    }
    Py_DECREF(m);
    return 0;
fail:
    tw_level_free(w, L);
    w->depth--;
    return -1;
}

/* The matcher's answer for (inner, name), each with "/" after it for a folder:
 * 1 excluded, 0 not, -1 error. */
static int excluded(Level *L, const char *inner, size_t ninner, const char *name,
                    size_t nname, int slash) {
    if (!L->matcher) return 0;
    if (L->filtered && !(L->first[(unsigned char)name[0]] & 1) &&
        !(ninner && (L->first[(unsigned char)inner[0]] & 2)))
        return 0;  /* starts as no pattern does */
    PyObject *a = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(ninner + slash));
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(nname + slash));
    if (!a || !b) { Py_XDECREF(a); Py_XDECREF(b); return -1; }
    memcpy(PyBytes_AS_STRING(a), inner, ninner);
    memcpy(PyBytes_AS_STRING(b), name, nname);
    if (slash) {
        PyBytes_AS_STRING(a)[ninner] = '/';
        PyBytes_AS_STRING(b)[nname] = '/';
    }
    PyObject *r = PyObject_CallFunctionObjArgs(L->matcher, a, b, NULL);
    Py_DECREF(a);
    Py_DECREF(b);
    if (!r) return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

static int add_pending(Level *L, const char *name, size_t len, Listing *listing,
                       Here *here) {
    if (L->npending == L->cap_pending) {
        size_t cap = L->cap_pending ? 2 * L->cap_pending : 4;
        Pending *p = realloc(L->pending, cap * sizeof *p);
        if (!p) { PyErr_NoMemory(); return -1; }
        L->pending = p; L->cap_pending = cap;
    }
    Pending *p = &L->pending[L->npending];
    memset(p, 0, sizeof *p);
    if (tw_buf_set(&p->name, name, len, "", 0, 0) < 0) return -1;
    p->listing = *listing;
    p->here = *here;
    L->npending++;
    return 0;
}

/* The next entry of the walk into w->rel/st/path (item_kind 0) or a skipped path
 * (item_kind 1, item_errno, item_is_dir): 1, or 0 at the end, or -1 on an error. */
int tw_scan_next(Walk *w) {
    while (w->depth) {
        Level *L = &w->stack[w->depth - 1];
        if (L->pos == L->nkeys) {
            tw_level_free(w, L);
            w->depth--;
            continue;
        }
        Key k = L->keys[L->pos++];
        Item *it = &L->listing.items[k.item];
        const char *name = L->listing.names.p + it->name;
        if (tw_buf_set(&w->rel, L->prefix.p, L->prefix.n, name, it->len, 0) < 0) return -1;
        if (k.sub) {
            for (size_t i = 0; i < L->npending; i++) {
                Pending *p = &L->pending[i];
                if (p->name.n != it->len || memcmp(p->name.p, name, it->len)) continue;
                Pending taken = *p;
                L->pending[i] = L->pending[--L->npending];
                w->rel.p[w->rel.n++] = '/';
                int r = tw_push_level(w, w->rel.p, w->rel.n, &taken.listing, &taken.here);
                free(taken.name.p);
                if (r < 0) {
                    tw_listing_free(&taken.listing);
                    tw_here_close(w, &taken.here);
                    return -1;
                }
                break;
            }
            continue;
        }
        const char *rel = w->rel.p;
        size_t nrel = w->rel.n;
        int emit = L->whole || in_range(w, rel, nrel);
        if (!emit) {
            if (!it->is_dir) continue;
            if (tw_buf_set(&w->scratch, rel, nrel, "", 0, 1) < 0) return -1;
            if (!touches(w, w->scratch.p, w->scratch.n)) continue;
        }
        int by_path = L->here.fd < 0;
        if (it->abs >= 0) {
            const char *abs = L->listing.names.p + it->abs;
            if (tw_buf_set(&w->path, abs, strlen(abs), "", 0, 0) < 0) return -1;
        } else {
            if (tw_buf_set(&w->path, L->here.path.p, L->here.path.n, "/", 1, 0) < 0) return -1;
            if (tw_buf_reserve(&w->path, it->len + 1) < 0) return -1;
            memcpy(w->path.p + w->path.n, name, it->len + 1);
            w->path.n += it->len;
        }
        int rc = by_path ? lstat(w->path.p, &w->st)
                         : fstatat(L->here.fd, name, &w->st, AT_SYMLINK_NOFOLLOW);
        if (rc < 0) {
            if (errno == ENOENT) continue;  /* vanished since the folder was listed */
            w->item_kind = 1; w->item_errno = errno; w->item_is_dir = 0;
            return 1;
        }
        const char *inner = rel + (L->cut < nrel ? L->cut : nrel);
        size_t ninner = nrel - (size_t)(inner - rel);
        mode_t mode = w->st.st_mode;
        if (S_ISREG(mode)) {
            if (!emit) continue;
            int x = excluded(L, inner, ninner, name, it->len, 0);
            if (x < 0) return -1;
            if (x) continue;
            w->item_kind = 0;
            return 1;
        }
        int source = L->prefix.n == 0;  /* the top level holds the sources */
        if (S_ISDIR(mode)) {
            if (!source) {
                int x = excluded(L, inner, ninner, name, it->len, 1);
                if (x < 0) return -1;
                if (x) continue;
            }
            Listing listing;
            Here here;
            int e = tw_list_dir(w, name, w->path.p, w->path.n, L->here.fd, &listing, &here);
            if (e < 0) return -1;
            if (e > 0) {
                w->item_kind = 1; w->item_errno = e; w->item_is_dir = 1;
                return 1;
            }
            if (source) {
                PyObject *r = PyObject_CallFunction(w->enter_source, "y#y#", name,
                                                    (Py_ssize_t)it->len, w->path.p,
                                                    (Py_ssize_t)w->path.n);
                L = &w->stack[w->depth - 1];
                if (!r) {
                    tw_listing_free(&listing);
                    tw_here_close(w, &here);
                    return -1;
                }
                Py_DECREF(r);
            }
            /* emit, or (not emit and) touches: checked above for a folder */
            if (add_pending(L, name, it->len, &listing, &here) < 0) {
                tw_listing_free(&listing);
                tw_here_close(w, &here);
                return -1;
            }
            if (!emit) continue;
            w->item_kind = 0;
            return 1;
        }
        if (!emit) continue;
        if (!source) {
            int x = excluded(L, inner, ninner, name, it->len, 0);
            if (x < 0) return -1;
            if (x) continue;
        }
        w->item_kind = 0;
        return 1;
    }
    return 0;
}

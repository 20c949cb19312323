/* The walk of fsinfo/scan.py in C, aligned with the catalog's open rows as it goes:
 * a pair whose signatures are equal (an unchanged regular file with one name, or an
 * unchanged folder) is counted and dropped; every other pair is handed to Python, which
 * decides it exactly as before. scan.Scanner is the reference: scan.c follows it step
 * for step (order, ranges, excludes, descriptors), and tests/unit/test_fastwalk.py checks
 * that both give the same changes. Python wrapper, reasons and layout: fastwalk.py. */

#include "walk.h"

#include <stdlib.h>
#include <structmember.h>

static PyTypeObject StatType;
static PyStructSequence_Field stat_fields[] = {
    {"st_mode", NULL}, {"st_ino", NULL}, {"st_dev", NULL}, {"st_nlink", NULL},
    {"st_uid", NULL}, {"st_gid", NULL}, {"st_size", NULL}, {"st_mtime_ns", NULL},
    {"st_ctime_ns", NULL}, {"st_rdev", NULL}, {NULL, NULL}};
static PyStructSequence_Desc stat_desc = {
    "twofold.fsinfo._walk.stat_result",
    "What the walk read of an entry: the fields Entry is built from.", stat_fields, 10};

/* Nanoseconds since the epoch as a Python int (past 64 bits too). */
PyObject *tw_ns_obj(struct timespec t) {
    long long v;
    if (tw_ns_of(t, &v)) return PyLong_FromLongLong(v);
    PyObject *s = PyLong_FromLongLong((long long)t.tv_sec);
    PyObject *g = PyLong_FromLong(1000000000L);
    PyObject *n = PyLong_FromLong(t.tv_nsec);
    PyObject *m = s && g ? PyNumber_Multiply(s, g) : NULL;
    PyObject *r = m && n ? PyNumber_Add(m, n) : NULL;
    Py_XDECREF(s); Py_XDECREF(g); Py_XDECREF(n); Py_XDECREF(m);
    return r;
}

/* Sets the n fields of the struct sequence s from v (taking the references); NULL, with s
 * released, if any of them failed to be made. */
PyObject *tw_struct_fill(PyObject *s, PyObject **v, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (!v[i]) bad = 1;
        PyStructSequence_SET_ITEM(s, i, v[i] ? v[i] : Py_NewRef(Py_None));
    }
    if (bad) { Py_DECREF(s); return NULL; }
    return s;
}

static PyObject *stat_obj(const struct stat *st) {
    PyObject *s = PyStructSequence_New(&StatType);
    if (!s) return NULL;
    PyObject *v[10] = {
        PyLong_FromUnsignedLong((unsigned long)st->st_mode),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_ino),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_dev),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_nlink),
        PyLong_FromUnsignedLong((unsigned long)st->st_uid),
        PyLong_FromUnsignedLong((unsigned long)st->st_gid),
        PyLong_FromLongLong((long long)st->st_size),
        tw_ns_obj(st->st_mtim), tw_ns_obj(st->st_ctim),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_rdev)};
    return tw_struct_fill(s, v, 10);
}

/* ---- the iterator ------------------------------------------------------------------ */

/* Yields, in path order, (0, path, (stat, absolute path), row or None) for an entry,
 * (1, path, (errno, is_dir), row or None) for a path that could not be read, and
 * (2, path, None, row) for a row the walk did not find; None every TICK dropped pairs. */
static PyObject *walk_next(Walk *w) {
    for (;;) {
        if (!w->have_item && !w->scan_done) {
            int r = tw_scan_next(w);
            if (r < 0) return NULL;
            if (r == 0) w->scan_done = 1;
            else w->have_item = 1;
        }
        int row = tw_cur_row(w);
        if (row < 0) return NULL;
        if (!w->have_item && !row) return NULL;
        int c = 1;
        if (row && w->have_item)
            c = cmp_bytes(sqlite3_column_blob(w->stmt, R_PATH),
                          (size_t)sqlite3_column_bytes(w->stmt, R_PATH), w->rel.p, w->rel.n);
        if (row && (!w->have_item || c < 0)) {
            PyObject *r = tw_row_obj(w);
            w->row_state = 0;
            return r ? Py_BuildValue("(iOON)", 2, PyTuple_GET_ITEM(r, R_PATH), Py_None, r)
                     : NULL;
        }
        int same = row && c == 0;
        if (same && w->item_kind == 0 && tw_same_signature(w)) {
            w->have_item = 0;
            w->row_state = 0;
            w->same++;
            if (S_ISREG(w->st.st_mode)) {
                w->files++;
                w->nbytes += (long long)w->st.st_size;
            }
            if (++w->since_tick == TICK) {
                w->since_tick = 0;
                if (PyErr_CheckSignals() < 0) return NULL;
                Py_RETURN_NONE;
            }
            continue;
        }
        PyObject *payload, *r = Py_NewRef(Py_None);
        if (same) {
            Py_SETREF(r, tw_row_obj(w));
            if (!r) return NULL;
            w->row_state = 0;
        }
        if (w->item_kind == 0) {
            PyObject *st = stat_obj(&w->st);
            payload = st ? Py_BuildValue("(Ny#)", st, w->path.p, (Py_ssize_t)w->path.n) : NULL;
        } else {
            payload = Py_BuildValue("(ii)", w->item_errno, w->item_is_dir);
        }
        w->have_item = 0;
        if (!payload) { Py_DECREF(r); return NULL; }
        return Py_BuildValue("(iy#NN)", w->item_kind, w->rel.p, (Py_ssize_t)w->rel.n,
                             payload, r);
    }
}

static void walk_dealloc(Walk *w) {
    while (w->depth) tw_level_free(w, &w->stack[--w->depth]);
    free(w->stack);
    free(w->rel.p);
    free(w->path.p);
    free(w->scratch.p);
    sqlite3_finalize(w->stmt);
    sqlite3_close(w->db);
    Py_XDECREF(w->lo);
    Py_XDECREF(w->hi);
    Py_XDECREF(w->matcher_for);
    Py_XDECREF(w->enter_source);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static int walk_init(Walk *w, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"sources", "lo", "hi", "matcher_for", "enter_source", "db_file",
                         "sql", "max_held", NULL};
    PyObject *sources, *lo, *hi, *matcher_for, *enter_source;
    const char *db_file, *sql;
    int max_held;
    if (w->stack) {
        PyErr_SetString(PyExc_RuntimeError, "a Walk is set up once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OOOyyi", kw, &PyList_Type, &sources,
                                     &PyBytes_Type, &lo, &hi, &matcher_for, &enter_source,
                                     &db_file, &sql, &max_held))
        return -1;
    if (hi != Py_None && !PyBytes_Check(hi)) {
        PyErr_SetString(PyExc_TypeError, "hi must be bytes or None");
        return -1;
    }
    w->lo = Py_NewRef(lo);
    w->hi = Py_NewRef(hi);
    w->matcher_for = Py_NewRef(matcher_for);
    w->enter_source = Py_NewRef(enter_source);
    w->max_held = max_held;
    if (tw_open_rows(w, db_file, sql) < 0) return -1;
    Listing top;
    memset(&top, 0, sizeof top);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sources); i++) {
        PyObject *s = PyList_GET_ITEM(sources, i);
        const char *name, *path;
        Py_ssize_t nn, np;
        if (!PyArg_ParseTuple(s, "y#y#", &name, &nn, &path, &np) ||
            tw_listing_add(&top, name, (size_t)nn, path, (size_t)np, 1) < 0) {
            tw_listing_free(&top);
            return -1;
        }
    }
    Here nowhere;
    memset(&nowhere, 0, sizeof nowhere);
    nowhere.fd = -1;
    return tw_push_level(w, "", 0, &top, &nowhere);
}

static PyMemberDef walk_members[] = {
    {"same", T_LONGLONG, offsetof(Walk, same), READONLY, "pairs dropped as unchanged"},
    {"files", T_LONGLONG, offsetof(Walk, files), READONLY, "of which regular files"},
    {"nbytes", T_LONGLONG, offsetof(Walk, nbytes), READONLY, "and their bytes"},
    {"held", T_INT, offsetof(Walk, held), READONLY, "folders held open now"},
    {NULL}};

static PyTypeObject WalkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "twofold.fsinfo._walk.Walk",
    .tp_basicsize = sizeof(Walk),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Walk(sources, lo, hi, matcher_for, enter_source, db_file, sql, max_held): "
              "the walk of scan.Scanner aligned with catalog rows, equal pairs dropped.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)walk_init,
    .tp_dealloc = (destructor)walk_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)walk_next,
    .tp_members = walk_members,
};

static PyMethodDef functions[] = {
    {"scan_folder", tw_scan_folder, METH_VARARGS,
     "scan_folder(path, os.stat_result) -> [(name, path, lstat, xattrs)] by name "
     "(image/filewalk.py)"},
    {"read_small", tw_read_small, METH_VARARGS,
     "read_small(paths, limit, os.stat_result) -> [(data, fstat, unstable) | None | False] "
     "(image/filewalk.py)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_walk",
    .m_methods = functions,
    .m_doc = "The walk of fsinfo/scan.py in C, aligned with the catalog (see fastwalk.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__walk(void) {
    if (PyType_Ready(&WalkType) < 0) return NULL;
    if (PyStructSequence_InitType2(&StatType, &stat_desc) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Walk", (PyObject *)&WalkType) < 0 ||
        PyModule_AddObjectRef(m, "stat_result", (PyObject *)&StatType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

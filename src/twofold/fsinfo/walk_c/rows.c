/* The catalog's open rows, read through SQLite's C API alongside the walk, and the
 * comparison of a row with an entry without making a Python object. */

#include "walk.h"

#include <stdlib.h>

/* Raise sqlite3.DatabaseError as Python's sqlite3 module would, with SQLite's (extended)
 * code as sqlite_errorcode, so that callers handle both walks' failures alike. */
static void db_error(int code, const char *msg) {
    PyObject *mod = PyImport_ImportModule("sqlite3");
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "DatabaseError") : NULL;
    Py_XDECREF(mod);
    if (!cls) return;
    PyObject *err = PyObject_CallFunction(cls, "s", msg);
    Py_DECREF(cls);
    if (!err) return;
    PyObject *num = PyLong_FromLong(code);
    if (num && PyObject_SetAttrString(err, "sqlite_errorcode", num) == 0)
        PyErr_SetObject((PyObject *)Py_TYPE(err), err);
    Py_XDECREF(num);
    Py_DECREF(err);
}

/* Open the catalog read-only and start the query for [lo, hi): ?1 is lo, ?2 hi. */
int tw_open_rows(Walk *w, const char *file, const char *sql) {
    int rc = sqlite3_open_v2(file, &w->db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(w->db, 5000);  /* as Python's sqlite3.connect */
        rc = sqlite3_prepare_v2(w->db, sql, -1, &w->stmt, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(w->stmt, 1, PyBytes_AS_STRING(w->lo),
                               (int)PyBytes_GET_SIZE(w->lo), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && w->hi != Py_None)
        rc = sqlite3_bind_blob(w->stmt, 2, PyBytes_AS_STRING(w->hi),
                               (int)PyBytes_GET_SIZE(w->hi), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) {
        db_error(w->db ? sqlite3_extended_errcode(w->db) : rc,
                 w->db ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

/* 1 when the statement stands on a row, 0 at the end, -1 on an error (raised). */
int tw_cur_row(Walk *w) {
    if (w->row_state == 0) {
        int rc = sqlite3_step(w->stmt);
        if (rc == SQLITE_ROW) {
            if (sqlite3_column_count(w->stmt) < R_COLS ||
                sqlite3_column_type(w->stmt, R_PATH) != SQLITE_BLOB) {
                PyErr_SetString(PyExc_TypeError, "rows must have SIG_SELECT's columns");
                return -1;
            }
            w->row_state = 1;
        } else if (rc == SQLITE_DONE) {
            w->row_state = 2;
        } else {
            db_error(sqlite3_extended_errcode(w->db), sqlite3_errmsg(w->db));
            return -1;
        }
    }
    return w->row_state == 1;
}

static int col_is(Walk *w, int col, long long v) {
    return sqlite3_column_type(w->stmt, col) == SQLITE_INTEGER &&
           sqlite3_column_int64(w->stmt, col) == v;
}

static int col_is_u(Walk *w, int col, unsigned long long v) {
    return sqlite3_column_type(w->stmt, col) == SQLITE_INTEGER &&
           (unsigned long long)sqlite3_column_int64(w->stmt, col) == v;
}

int tw_ns_of(struct timespec t, long long *out) {
    long long s;
    if (__builtin_mul_overflow((long long)t.tv_sec, 1000000000LL, &s)) return 0;
    return !__builtin_add_overflow(s, (long long)t.tv_nsec, out);
}

/* True when the row says exactly what Entry.signature() of this entry would: only for
 * a regular file with one name and a folder; anything else goes to Python. */
int tw_same_signature(Walk *w) {
    const struct stat *st = &w->st;
    int file = S_ISREG(st->st_mode);
    if (!(file && st->st_nlink <= 1) && !S_ISDIR(st->st_mode)) return 0;
    if (sqlite3_column_type(w->stmt, R_KIND) != SQLITE_TEXT ||
        sqlite3_column_bytes(w->stmt, R_KIND) != 1 ||
        sqlite3_column_text(w->stmt, R_KIND)[0] != (file ? 'f' : 'd'))
        return 0;
    long long mtime, ctime;
    if (!tw_ns_of(st->st_mtim, &mtime) || !tw_ns_of(st->st_ctim, &ctime)) return 0;
    return col_is(w, R_SIZE, file ? (long long)st->st_size : 0) &&
           col_is(w, R_MTIME, mtime) && col_is(w, R_CTIME, ctime) &&
           col_is_u(w, R_INO, (unsigned long long)st->st_ino) &&
           col_is(w, R_MODE, (long long)(st->st_mode & 07777)) &&
           col_is_u(w, R_UID, (unsigned long long)st->st_uid) &&
           col_is_u(w, R_GID, (unsigned long long)st->st_gid) &&
           sqlite3_column_type(w->stmt, R_TARGET) == SQLITE_NULL &&
           col_is(w, R_RDEV, 0) &&
           sqlite3_column_type(w->stmt, R_LINK_TO) == SQLITE_NULL;
}

/* The current row as Python's sqlite3 module would give it. */
PyObject *tw_row_obj(Walk *w) {
    int n = sqlite3_column_count(w->stmt);
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v;
        switch (sqlite3_column_type(w->stmt, i)) {
        case SQLITE_INTEGER:
            v = PyLong_FromLongLong(sqlite3_column_int64(w->stmt, i));
            break;
        case SQLITE_FLOAT:
            v = PyFloat_FromDouble(sqlite3_column_double(w->stmt, i));
            break;
        case SQLITE_TEXT:
            v = PyUnicode_FromStringAndSize((const char *)sqlite3_column_text(w->stmt, i),
                                            sqlite3_column_bytes(w->stmt, i));
            break;
        case SQLITE_BLOB:
            v = PyBytes_FromStringAndSize(sqlite3_column_blob(w->stmt, i),
                                          sqlite3_column_bytes(w->stmt, i));
            break;
        default:
            v = Py_NewRef(Py_None);
        }
        if (!v) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

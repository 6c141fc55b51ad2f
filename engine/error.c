#include "zkflow/error.h"

const char *zf_strerror(zf_err_t err) {
    switch (err) {
    case ZF_OK: return "success";
    case ZF_ECONFIG: return "bad configuration";
    case ZF_ERECORD: return "record failed";
    case ZF_EZK: return "ZooKeeper failure";
    case ZF_EKAFKA: return "Kafka failure";
    case ZF_ESYS: return "system call failed";
    case ZF_ENOMEM: return "out of memory";
    case ZF_EAGAIN: return "not attempted";
    case ZF_ENOENT: return "not found";
    case ZF_EFENCED: return "fenced by another owner";
    }
    return "unknown error";
}

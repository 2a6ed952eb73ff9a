/*
 * log.h - compatibility names of storage's logger, now common/cm_log.h.
 * Phase 2 of the restructure renames the call sites and deletes this file.
 */
#ifndef ST_LOG_H
#define ST_LOG_H

#include "cm_log.h"

#define ST_LOG_DEBUG CM_LOG_DEBUG
#define ST_LOG_INFO CM_LOG_INFO
#define ST_LOG_WARN CM_LOG_WARN
#define ST_LOG_ERROR CM_LOG_ERROR
#define st_log_level cm_log_level
#define st_log_parse_level cm_log_parse_level
#define st_log_set_replica(replica_id) cm_log_set_label("replica", (replica_id))
#define ST_LOG CM_LOG
#define ST_DEBUG CM_DEBUG
#define ST_INFO CM_INFO
#define ST_WARN CM_WARN
#define ST_ERROR CM_ERROR
#define ST_LOG_RATELIMITED CM_LOG_RATELIMITED
#define ST_WARN_RATELIMITED CM_WARN_RATELIMITED

#endif

/*
 * log.h - compatibility names of the gateway's logger, now common/cm_log.h.
 * Phase 2 of the restructure renames the call sites and deletes this file.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include "cm_log.h"

#define GW_LOG_DEBUG CM_LOG_DEBUG
#define GW_LOG_INFO CM_LOG_INFO
#define GW_LOG_WARN CM_LOG_WARN
#define GW_LOG_ERROR CM_LOG_ERROR
#define gw_log_level cm_log_level
#define gw_log_parse_level cm_log_parse_level
#define gw_log_set_node(node_id) cm_log_set_label("node", (node_id))
#define GW_LOG CM_LOG
#define GW_DEBUG CM_DEBUG
#define GW_INFO CM_INFO
#define GW_WARN CM_WARN
#define GW_ERROR CM_ERROR
#define GW_WARN_RATELIMITED CM_WARN_RATELIMITED

#endif

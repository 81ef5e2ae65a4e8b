'use strict'
// The error every manager call rejects with: an Error with the `code` of protocol.md section 8.2
// (`bad_spec`, `no_such_service`, `timeout`, ...) or one of the manager's own codes.

class ManagerError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ field?: string, request?: string }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message)
    this.name = 'ManagerError'
    this.code = code
    if (extra.field !== undefined) this.field = extra.field
    if (extra.request !== undefined) this.request = extra.request
  }
}

module.exports = { ManagerError }

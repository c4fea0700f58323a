package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/internal/sysaccount"
)

type newAccount struct {
	sysaccount.Account
	// Secret is shown in this answer only.
	Secret string `json:"secret"`
}

func (h *handler) createAccount(c *gin.Context) {
	var req sysaccount.Request
	if err := decodeJSON(c.Request, &req); err != nil {
		h.fail(c, err)
		return
	}
	realm := c.Param("realm")
	acc, secret, err := h.opts.Accounts.Create(c.Request.Context(), realm, h.actor(c), req)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header("Location", prefixOf(c)+"/realms/"+realm+"/system-accounts/"+acc.ClientID)
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, newAccount{Account: acc, Secret: secret})
}

func (h *handler) listAccounts(c *gin.Context) {
	accs, err := h.opts.Accounts.List(c.Request.Context(), c.Param("realm"), h.actor(c))
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, accs)
}

func (h *handler) getAccount(c *gin.Context) {
	acc, err := h.opts.Accounts.Get(c.Request.Context(), c.Param("realm"), h.actor(c), c.Param("client"))
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, acc)
}

func (h *handler) deleteAccount(c *gin.Context) {
	if err := h.opts.Accounts.Delete(c.Request.Context(), c.Param("realm"), h.actor(c), c.Param("client")); err != nil {
		h.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handler) rotateSecret(c *gin.Context) {
	secret, err := h.opts.Accounts.Rotate(c.Request.Context(), c.Param("realm"), h.actor(c), c.Param("client"))
	if err != nil {
		h.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"clientId": c.Param("client"), "secret": secret})
}

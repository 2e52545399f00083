package service

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/devstack/devstack/examples/shop/internal/knob"
)

// gatewayCheckout: GET /checkout?item=sku-1&qty=2 → orders POST /orders.
func (s *server) gatewayCheckout(w http.ResponseWriter, r *http.Request) {
	q := url.Values{"item": {r.URL.Query().Get("item")}, "qty": {r.URL.Query().Get("qty")}}
	s.gatewayRelay(w, r, http.MethodPost, "/orders", q)
}

// gatewayOrder: GET /orders/{id} → orders GET /orders/{id}.
func (s *server) gatewayOrder(w http.ResponseWriter, r *http.Request) {
	s.gatewayRelay(w, r, http.MethodGet, "/orders/"+url.PathEscape(r.PathValue("id")), url.Values{})
}

func (s *server) gatewayRelay(w http.ResponseWriter, r *http.Request, method, path string, q url.Values) {
	knob.Forward(q, r.URL.Query())
	order, err := s.call(r, Orders, method, path, q)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		meta
		Order json.RawMessage `json:"order"`
	}{s.meta(r), order})
}

type order struct {
	meta
	ID         string          `json:"id"`
	Item       string          `json:"item"`
	Qty        int             `json:"qty"`
	TotalCents int             `json:"total_cents"`
	Inventory  json.RawMessage `json:"inventory"`
	Payment    json.RawMessage `json:"payment"`
}

// createOrder: POST /orders?item=&qty= → inventory, then payments.
func (s *server) createOrder(w http.ResponseWriter, r *http.Request) {
	item, qty, ok := s.itemQty(w, r)
	if !ok {
		return
	}
	o := order{meta: s.meta(r), ID: "ord-" + randomHex(6), Item: item, Qty: qty, TotalCents: qty * priceCents(item)}

	q := url.Values{"item": {item}, "qty": {strconv.Itoa(qty)}}
	knob.Forward(q, r.URL.Query())
	var err error
	if o.Inventory, err = s.call(r, Inventory, http.MethodPost, "/reserve", q); err != nil {
		s.fail(w, err)
		return
	}
	q = url.Values{"order": {o.ID}, "amount": {strconv.Itoa(o.TotalCents)}}
	knob.Forward(q, r.URL.Query())
	if o.Payment, err = s.call(r, Payments, http.MethodPost, "/charge", q); err != nil {
		s.fail(w, err)
		return
	}
	s.orders.put(o)
	writeJSON(w, http.StatusCreated, o)
}

// getOrder: GET /orders/{id}, from memory.
func (s *server) getOrder(w http.ResponseWriter, r *http.Request) {
	o, ok := s.orders.get(r.PathValue("id"))
	if !ok {
		msg := fmt.Sprintf("no order %q (orders are kept in memory; create one with GET /checkout on the gateway)", r.PathValue("id"))
		s.writeFailure(w, http.StatusNotFound, &Failure{Hop: s.name, Status: http.StatusNotFound, Message: msg})
		return
	}
	o.meta = s.meta(r)
	writeJSON(w, http.StatusOK, o)
}

// reserve: POST /reserve?item=&qty=.
func (s *server) reserve(w http.ResponseWriter, r *http.Request) {
	item, qty, ok := s.itemQty(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		meta
		Item      string `json:"item"`
		Reserved  int    `json:"reserved"`
		Warehouse string `json:"warehouse"`
	}{s.meta(r), item, qty, "ams-1"})
}

// charge: POST /charge?order=&amount= → fraud GET /score.
func (s *server) charge(w http.ResponseWriter, r *http.Request) {
	amount, err := strconv.Atoi(r.URL.Query().Get("amount"))
	if err != nil || amount <= 0 {
		s.badRequest(w, "amount: want a positive number of cents")
		return
	}
	q := url.Values{"order": {r.URL.Query().Get("order")}, "amount": {strconv.Itoa(amount)}}
	knob.Forward(q, r.URL.Query())
	fraud, err := s.call(r, Fraud, http.MethodGet, "/score", q)
	if err != nil {
		s.fail(w, err)
		return
	}
	var verdict struct{ Decision string }
	_ = json.Unmarshal(fraud, &verdict) // an unreadable verdict holds the payment for review
	status := "held_for_review"
	if verdict.Decision == "allow" {
		status = "captured"
	}
	writeJSON(w, http.StatusOK, struct {
		meta
		Order       string          `json:"order"`
		AmountCents int             `json:"amount_cents"`
		Status      string          `json:"status"`
		Fraud       json.RawMessage `json:"fraud"`
	}{s.meta(r), q.Get("order"), amount, status, fraud})
}

// score: GET /score?amount=, an "external" risk API: the bigger the amount,
// the riskier.
func (s *server) score(w http.ResponseWriter, r *http.Request) {
	amount, err := strconv.Atoi(r.URL.Query().Get("amount"))
	if err != nil || amount < 0 {
		s.badRequest(w, "amount: want a number of cents")
		return
	}
	score := math.Round(min(float64(amount)/100_000, 0.99)*100) / 100
	decision := "allow"
	if score >= 0.8 {
		decision = "review"
	}
	writeJSON(w, http.StatusOK, struct {
		meta
		Provider string  `json:"provider"`
		Score    float64 `json:"score"`
		Decision string  `json:"decision"`
	}{s.meta(r), "riskly.example", score, decision})
}

// itemQty reads item (required) and qty (1..100, default 1) or answers 400.
func (s *server) itemQty(w http.ResponseWriter, r *http.Request) (string, int, bool) {
	item, qs := r.URL.Query().Get("item"), r.URL.Query().Get("qty")
	if item == "" {
		s.badRequest(w, "item: required, like item=sku-1")
		return "", 0, false
	}
	qty := 1
	if qs != "" {
		n, err := strconv.Atoi(qs)
		if err != nil || n < 1 || n > 100 {
			s.badRequest(w, "qty: want a number from 1 to 100")
			return "", 0, false
		}
		qty = n
	}
	return item, qty, true
}

func (s *server) badRequest(w http.ResponseWriter, msg string) {
	s.writeFailure(w, http.StatusBadRequest, &Failure{Hop: s.name, Status: http.StatusBadRequest, Message: msg})
}

// priceCents is a made-up but stable price for item.
func priceCents(item string) int {
	h := fnv.New32a()
	h.Write([]byte(item))
	return 500 + int(h.Sum32()%5000)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// orderStore keeps the last max orders in memory.
type orderStore struct {
	mu   sync.Mutex
	max  int
	byID map[string]order
	ids  []string // oldest first
}

func newOrderStore(max int) *orderStore {
	return &orderStore{max: max, byID: map[string]order{}}
}

func (st *orderStore) put(o order) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.ids) == st.max {
		delete(st.byID, st.ids[0])
		st.ids = st.ids[1:]
	}
	st.byID[o.ID] = o
	st.ids = append(st.ids, o.ID)
}

func (st *orderStore) get(id string) (order, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	o, ok := st.byID[id]
	return o, ok
}

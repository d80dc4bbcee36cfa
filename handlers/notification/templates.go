package notification

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	texttemplate "text/template"

	"github.com/orderpipe/orderpipe/events"
)

type emailContent struct{ subject, text, html string }

type emailData struct {
	Name    string
	OrderID string
	Items   []emailItem
	Reason  string
}

type emailItem struct {
	Quantity int
	Name     string
	SKU      events.SKU
}

var subjects = map[events.Type]string{
	events.OrderPlaced:    "Order %s confirmed",
	events.OrderCancelled: "Order %s cancelled",
	events.OrderShipped:   "Order %s shipped",
}

var textBodies = map[events.Type]*texttemplate.Template{
	events.OrderPlaced: texttemplate.Must(texttemplate.New("placed").Parse(`Hello {{.Name}},

thank you for your order {{.OrderID}}. We have received it:
{{range .Items}}
  {{.Quantity}} x {{.Name}} ({{.SKU}}){{end}}

Your invoice follows separately.
`)),
	events.OrderCancelled: texttemplate.Must(texttemplate.New("cancelled").Parse(`Hello {{.Name}},

your order {{.OrderID}} has been cancelled ({{.Reason}}).
You have not been charged for it.
`)),
	events.OrderShipped: texttemplate.Must(texttemplate.New("shipped").Parse(`Hello {{.Name}},

your order {{.OrderID}} is on its way.
`)),
}

var htmlBodies = map[events.Type]*htmltemplate.Template{
	events.OrderPlaced: htmltemplate.Must(htmltemplate.New("placed").Parse(`<p>Hello {{.Name}},</p>
<p>thank you for your order <b>{{.OrderID}}</b>. We have received it:</p>
<ul>{{range .Items}}<li>{{.Quantity}} &times; {{.Name}} ({{.SKU}})</li>{{end}}</ul>
<p>Your invoice follows separately.</p>`)),
	events.OrderCancelled: htmltemplate.Must(htmltemplate.New("cancelled").Parse(`<p>Hello {{.Name}},</p>
<p>your order <b>{{.OrderID}}</b> has been cancelled ({{.Reason}}).</p>
<p>You have not been charged for it.</p>`)),
	events.OrderShipped: htmltemplate.Must(htmltemplate.New("shipped").Parse(`<p>Hello {{.Name}},</p>
<p>your order <b>{{.OrderID}}</b> is on its way.</p>`)),
}

// reasonText words a cancellation reason for the customer.
func reasonText(r string) string {
	switch r {
	case "out_of_stock":
		return "an item is out of stock"
	case "", "customer_request":
		return "at your request"
	default:
		return r
	}
}

func render(ev events.Event, names map[events.SKU]string) (emailContent, error) {
	d := emailData{Name: ev.Order.Customer.Name, OrderID: ev.Order.OrderID, Reason: reasonText(ev.Reason)}
	for _, it := range ev.Order.Items {
		d.Items = append(d.Items, emailItem{Quantity: it.Quantity, Name: names[it.SKU], SKU: it.SKU})
	}
	var text, html bytes.Buffer
	tt, ht := textBodies[ev.EventType], htmlBodies[ev.EventType]
	if tt == nil || ht == nil {
		return emailContent{}, fmt.Errorf("no email template for %s", ev.EventType)
	}
	if err := tt.Execute(&text, d); err != nil {
		return emailContent{}, fmt.Errorf("render text email: %w", err)
	}
	if err := ht.Execute(&html, d); err != nil {
		return emailContent{}, fmt.Errorf("render html email: %w", err)
	}
	return emailContent{subject: fmt.Sprintf(subjects[ev.EventType], ev.Order.OrderID), text: text.String(), html: html.String()}, nil
}

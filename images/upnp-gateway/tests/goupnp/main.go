// Command goupnp drives goupnp v1.3.0, the UPnP client go-libp2p's NAT port mapping uses, against a gateway
// description URL: it reads the device as go-libp2p does, then maps, reads and deletes ports through the
// WANIPConnection:1 and :2 clients. It exits non-zero, saying why on stderr, at the first thing that is not as
// a working IGD would have it.
//
//	go run . -location http://127.0.0.1:5000/rootDesc.xml -external 10.217.0.1 -client 10.0.0.4
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

func main() {
	location := flag.String("location", "", "the gateway's LOCATION")
	external := flag.String("external", "", "the external address the gateway must report")
	client := flag.String("client", "", "the internal client to map ports to")
	flag.Parse()
	if err := run(*location, *external, *client); err != nil {
		fmt.Fprintln(os.Stderr, "goupnp:", err)
		os.Exit(1)
	}
	fmt.Println("ok")
}

func run(location, external, client string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	loc, err := url.Parse(location)
	if err != nil {
		return err
	}
	root, err := goupnp.DeviceByURLCtx(ctx, loc)
	if err != nil {
		return fmt.Errorf("description: %w", err)
	}
	if root.Device.DeviceType != "urn:schemas-upnp-org:device:InternetGatewayDevice:2" {
		return fmt.Errorf("root device type %q", root.Device.DeviceType)
	}
	// What go-libp2p's serviceVisitor finds under the root.
	var types []string
	root.Device.VisitServices(func(s *goupnp.Service) { types = append(types, s.ServiceType) })
	fmt.Println("services:", types)

	ip1, err := internetgateway2.NewWANIPConnection1ClientsByURLCtx(ctx, loc)
	if err != nil || len(ip1) != 1 {
		return fmt.Errorf("WANIPConnection:1 clients: %d, %v", len(ip1), err)
	}
	c := ip1[0]
	if _, nat, err := c.GetNATRSIPStatusCtx(ctx); err != nil || !nat {
		return fmt.Errorf("GetNATRSIPStatus: nat %v, %v", nat, err)
	}
	if ip, err := c.GetExternalIPAddressCtx(ctx); err != nil || ip != external {
		return fmt.Errorf("GetExternalIPAddress: %q, %v", ip, err)
	}
	// As go-libp2p's upnp_NAT.AddPortMapping calls it.
	if err := c.AddPortMappingCtx(ctx, "", 41234, "TCP", 4001, client, true, "meshgate", 60); err != nil {
		return fmt.Errorf("AddPortMapping: %w", err)
	}
	port, intClient, enabled, _, lease, err := c.GetSpecificPortMappingEntryCtx(ctx, "", 41234, "TCP")
	if err != nil || port != 4001 || intClient != client || !enabled || lease == 0 || lease > 60 {
		return fmt.Errorf("GetSpecificPortMappingEntry: %d %q %v %d, %v", port, intClient, enabled, lease, err)
	}
	// Another host may not take the port.
	if err := c.AddPortMappingCtx(ctx, "", 41234, "TCP", 4001, "10.99.0.9", true, "other", 60); upnpCode(err) != 718 {
		return fmt.Errorf("AddPortMapping by another client: want fault 718, got %v", err)
	}

	ip2, err := internetgateway2.NewWANIPConnection2ClientsByURLCtx(ctx, loc)
	if err != nil || len(ip2) != 1 {
		return fmt.Errorf("WANIPConnection:2 clients: %d, %v", len(ip2), err)
	}
	reserved, err := ip2[0].AddAnyPortMappingCtx(ctx, "", 41234, "TCP", 4002, "10.99.0.9", true, "other", 60)
	if err != nil || reserved == 41234 || reserved == 0 {
		return fmt.Errorf("AddAnyPortMapping on a taken port: %d, %v", reserved, err)
	}
	if err := c.DeletePortMappingCtx(ctx, "", 41234, "TCP"); err != nil {
		return fmt.Errorf("DeletePortMapping: %w", err)
	}
	if err := c.DeletePortMappingCtx(ctx, "", 41234, "TCP"); upnpCode(err) != 714 {
		return fmt.Errorf("DeletePortMapping of no mapping: want fault 714, got %v", err)
	}
	fmt.Println("reserved:", reserved)
	return nil
}

// upnpCode is the UPnP error code of a SOAP fault (0 for anything else).
func upnpCode(err error) int {
	var fault *soap.SOAPFaultError
	if !errors.As(err, &fault) {
		return 0
	}
	return fault.Detail.UPnPError.Errorcode
}

// IcebergRest serves Apache Iceberg's REST catalog protocol for karch's tests, on one address.
// The protocol itself is Iceberg's own server side (RESTCatalogAdapter and RESTCatalogServlet,
// from iceberg-core's tests jar, which Iceberg's REST test fixture serves too) over whatever
// catalog the properties name. Ours only because that fixture's RESTCatalogServer listens on
// every interface, with no setting for the host; the tests' servers bind 127.0.0.1 only.
//
//   java -cp CLASSES:LIBS/* IcebergRest HOST PORT
//
// The catalog's properties come from the environment as the fixture takes them: CATALOG_ then
// the key upper-cased, with __ for - and _ for . (CATALOG_IO__IMPL is io-impl, CATALOG_S3_ENDPOINT
// is s3.endpoint), so that secrets stay out of the command line.
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.apache.iceberg.rest.RESTCatalogAdapter;
import org.apache.iceberg.rest.RESTCatalogServlet;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public final class IcebergRest {
  private static final String PREFIX = "CATALOG_";

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: IcebergRest HOST PORT (catalog properties in CATALOG_* variables)");
      System.exit(2);
    }
    Map<String, String> props = new HashMap<>();
    System.getenv().forEach((name, value) -> {
      if (name.startsWith(PREFIX)) {
        String key = name.substring(PREFIX.length()).replace("__", "-").replace('_', '.');
        props.put(key.toLowerCase(Locale.ROOT), value);
      }
    });
    // No Hadoop configuration: the properties name a FileIO (S3FileIO) that needs none.
    Catalog catalog = CatalogUtil.buildIcebergCatalog("karch", props, null);

    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(new RESTCatalogServlet(new RESTCatalogAdapter(catalog))), "/*");
    Server server = new Server();
    ServerConnector http = new ServerConnector(server);
    http.setHost(args[0]);
    http.setPort(Integer.parseInt(args[1]));
    server.addConnector(http);
    server.setHandler(context);
    server.setStopAtShutdown(true); // SIGTERM from services.sh down stops Jetty cleanly
    server.start();
    System.err.println("IcebergRest: serving catalog " + catalog.name() + " at http://" + args[0] + ":" + args[1]);
    server.join();
  }
}

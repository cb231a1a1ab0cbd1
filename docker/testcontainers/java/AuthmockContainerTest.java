// Testcontainers recipe for JUnit 5 (org.testcontainers:testcontainers and
// org.testcontainers:junit-jupiter 1.21): one authmock container for
// the class, ready once GET /__admin/health answers 200, reached through the
// host port Docker mapped to its 8080.
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import org.junit.jupiter.api.Test;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.junit.jupiter.Container;
import org.testcontainers.junit.jupiter.Testcontainers;
import org.testcontainers.utility.DockerImageName;

@Testcontainers
class AuthmockContainerTest {
    @Container
    static final GenericContainer<?> AUTHMOCK =
            new GenericContainer<>(DockerImageName.parse("ghcr.io/OWNER/authmock:0.1.0"))
                    .withExposedPorts(8080)
                    .withEnv("AUTHMOCK_SEED", "1")
                    .waitingFor(Wait.forHttp("/__admin/health").forPort(8080).forStatusCode(200));

    // What your client takes as MESH_BASE_URL and ONLYOFFICE_BASE_URL.
    static String baseUrl() {
        return "http://" + AUTHMOCK.getHost() + ":" + AUTHMOCK.getMappedPort(8080);
    }

    @Test
    void meshLoginSucceeds() throws Exception {
        HttpRequest request = HttpRequest.newBuilder(
                        URI.create(baseUrl() + "/api/v1/authenticate?userId=java"))
                .header("X-Client-Id", "test-client-id")
                .header("X-Client-Secret", "test-client-secret")
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(
                        "{\"type\":\"robinhood\",\"username\":\"ok@example.com\",\"password\":\"pass123\"}"))
                .build();
        HttpResponse<String> response =
                HttpClient.newHttpClient().send(request, HttpResponse.BodyHandlers.ofString());
        assertEquals(200, response.statusCode());
        assertTrue(response.body().contains("\"status\":\"succeeded\""));
    }
}

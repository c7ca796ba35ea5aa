using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.OpenApi;
using SurgeryService.Api.Tenants;
using SurgeryService.Domain.Surgery;
using SurgeryService.Infrastructure.Persistence;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace SurgeryService.Api.OpenApi;

/// <summary>
/// An example for an endpoint's request, shown in Swagger UI: the JSON body, the multipart form's fields, or the query
/// parameters of the same names.
/// </summary>
public sealed class OpenApiExample(object example)
{
    public JsonNode Json { get; } = JsonSerializer.SerializeToNode(example, JsonColumn.Options)!;
}

public static class SwaggerSetup
{
    private const string SchemeName = "ApiKey";

    public static IServiceCollection AddSurgerySwagger(this IServiceCollection services) =>
        services.AddSwaggerGen(options =>
        {
            options.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "Surgery Service",
                Version = "v1",
                Description = "Compresses neural networks with Dynamic Network Surgery (Guo et al. 2016). " +
                              "Authorize with your tenant's API key (header X-Api-Key).",
            });
            options.AddSecurityDefinition(SchemeName, new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = ApiKeyAuthenticationHandler.HeaderName,
                Description = "Your tenant's API key",
            });
            options.AddSecurityRequirement(document => new OpenApiSecurityRequirement
            {
                [new OpenApiSecuritySchemeReference(SchemeName, document)] = [],
            });
            options.OperationFilter<ExampleOperationFilter>();
            options.OperationFilter<DatabaseUnavailableFilter>();
            // The request and response types' doc comments (each field's unit, range and default) become the schema
            // descriptions. The build writes the files next to the assemblies; a copy of the binaries without them
            // serves the document without descriptions.
            foreach (var assembly in new[] { typeof(SwaggerSetup).Assembly, typeof(SurgerySettings).Assembly })
            {
                var xml = Path.Combine(AppContext.BaseDirectory, assembly.GetName().Name + ".xml");
                if (File.Exists(xml)) options.IncludeXmlComments(xml);
            }
        });

    /// <summary>Every operation may answer 503 while the database is down (<c>DomainExceptionHandler</c>).</summary>
    private sealed class DatabaseUnavailableFilter : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            operation.Responses ??= new OpenApiResponses();
            operation.Responses.TryAdd("503", new OpenApiResponse
            {
                Description = "Database unavailable (down or restarting): a ProblemDetails; retry after the Retry-After header's " +
                              $"seconds ({Errors.DomainExceptionHandler.RetryAfterSeconds}).",
            });
        }
    }

    private sealed class ExampleOperationFilter : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            var example = context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<OpenApiExample>().FirstOrDefault();
            foreach (var parameter in operation.Parameters?.OfType<OpenApiParameter>() ?? [])
            {
                if (example?.Json is JsonObject fields && fields.TryGetPropertyValue(parameter.Name!, out var value))
                {
                    parameter.Example = value?.DeepClone();
                }
                else if (parameter.Name == "id")
                {
                    parameter.Example = JsonValue.Create("0193a0c2-6c2e-7f10-b3a4-1d5e8f9a0b62");
                }
            }
            if (example is null) return;
            if (operation.RequestBody?.Content is { } content)
            {
                foreach (var media in content.Values)
                {
                    media.Example = example.Json.DeepClone();
                }
            }
        }
    }
}
